"""CA rotation with overlap: a new CA registered in AWS beside the old one, the signing
profiles switched to it, a paced renewal wave, and the old CA retired (INACTIVE in AWS,
archived) once nothing active depends on it.

``services`` starts a rotation and runs its first phase; ``wave`` the renewal wave, pause
and resume; ``retire`` a CA's retirement. See docs/ca-rotation.md.
"""
