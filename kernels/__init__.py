"""switchboard.kernels"""
