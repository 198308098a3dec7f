print("damselfly-bench: not yet")
