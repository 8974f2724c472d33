"""Dynamos and the rehearsal methods that share its network, buffer and losses.

The gated reduced ResNet-18 and its agents (``resnet``, ``agent``), the
reservoir buffer (``buffer``), the loss terms (``losses``), the adapter that
turns a per-step loss into a method (``loss_method``), the methods themselves
(Dynamos, its Eq. 8 baseline, ER, DER++, SGD, Joint) and the analyses of a
trained gated network (``analysis``, ``plots``).
"""

# Imported for their @register: each makes its methods available by config name.
from dynamos_jax.methods.dynamos import baseline, derpp, dynamos, er, joint, sgd  # noqa: F401
