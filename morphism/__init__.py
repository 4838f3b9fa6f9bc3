"""morphnas.morphism"""
