"""The sign-in bar: a browser wallet, or a local wallet kept encrypted on this machine."""
