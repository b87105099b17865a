"""edge_sdk.hw: Amaranth building blocks for the FPGA backend (XNOR-popcount, threshold, the
folded layer engine, the block-code factorizer) and their testbenches. See DESIGN.md."""
