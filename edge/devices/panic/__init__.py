"""Panic buttons, reset key, lamps, buzzer and walk test: the shelter store's alarm."""
