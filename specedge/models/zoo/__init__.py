"""The built-in model zoo: importing this package registers every family.

One family per module, each read top to bottom (config, blocks, model, builders):
:mod:`.lenet` and :mod:`.convnet` are the SIEVE benchmarks (thesis Table 4.1),
:mod:`.mobilenet` carries M&MNet's width/resolution multipliers (thesis 5.3), and
:mod:`.resnet` is the CIFAR ResNet family used as a stronger master.
"""

from __future__ import annotations

from specedge.models.zoo import convnet, lenet, mobilenet, resnet

__all__ = ["convnet", "lenet", "mobilenet", "resnet"]
