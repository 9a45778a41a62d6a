"""Values and keys, pure and without I/O: the bottom layer every other layer may import.

``types`` (the miss sentinel, durations, key checks), ``clock``, ``framing`` (the 8-byte
header and the ``Serializer`` protocol), ``formats`` and ``wrappers`` (the serializers,
documented in ``kirocache.serializers``), ``typed_decode``, and the key builders
``fingerprint``, ``argument_key`` and ``key_template`` (documented in ``kirocache.keys``).
"""
