"""The control service: poll → store → forecast → optimise → dispatch, for one site."""
