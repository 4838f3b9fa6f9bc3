"""morphnas.spaces"""
