"""For users' tests: sample input images, the mock in this process or on a port (the
harness, no pytest needed), and the pytest plugin's fixtures (``pytest_plugin``)."""

from ..controls.network import SimulatedNetworkFault
from .samples import sample_data_uri, sample_image, sample_names

__all__ = ["SimulatedNetworkFault", "sample_data_uri", "sample_image", "sample_names"]
