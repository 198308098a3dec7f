print("damselfly-jobs: not yet")
