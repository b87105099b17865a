"""IR passes: one transformation per module, each a class whose `apply(graph)` returns
`(new_graph, changed)`. `pipeline.lower` runs them in the order the golden model needs."""
