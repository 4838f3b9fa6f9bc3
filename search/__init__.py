"""morphnas.search"""
