print("damselfly")
