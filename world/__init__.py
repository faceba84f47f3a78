"""switchboard.world"""
