"""switchboard.router"""
