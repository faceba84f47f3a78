"""switchboard.ui"""
