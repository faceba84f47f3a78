"""switchboard.agent"""
