"""``videolabel demo`` (``run``) and the synthetic labelled videos it, the tests and benchmarks use
(``synthetic``)."""
