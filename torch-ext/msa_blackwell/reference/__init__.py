"""PyTorch references: the CPU path of every op, and the oracle of every test."""
