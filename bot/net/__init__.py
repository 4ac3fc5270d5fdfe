"""Outbound HTTP to addresses users give (a ZIP to fetch for `/batch`): one URL policy, bounded downloads."""
