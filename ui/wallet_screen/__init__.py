"""The Wallet screen: the signed-in wallet's revenue shares, claims, and payments."""
