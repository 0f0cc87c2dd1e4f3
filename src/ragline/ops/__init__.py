"""Operations: the supervised stack, fault drills, the balancer, benchmarks and evaluation."""
