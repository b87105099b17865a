# CMake toolchain file: arm-none-eabi-gcc (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi) for
# the NUCLEO-F446RE's Cortex-M4F. The CPU flags reach every object, the model library included:
# the float ABI must be the same across the whole link. They are edge-sdk's flags for the board
# (converters/cortexm/boards.py; the library test checks that they agree).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
find_program(CMAKE_SIZE arm-none-eabi-size)

# CMake's compiler checks cannot link a program without our start-up code and linker script.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(EDGE_CPU_FLAGS "-mthumb -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16")
set(CMAKE_C_FLAGS_INIT "${EDGE_CPU_FLAGS}")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
