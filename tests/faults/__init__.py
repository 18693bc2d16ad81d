"""The fault suite: real processes under crashes, bad input, hostile clients and reloads."""
