"""Predictions in function space from a kernel, with neural-tangents' `nt.predict`
signatures and layouts (docs/models.md, "Migrating from neural-tangents")."""

from ._descent import ODEState as ODEState, gradient_descent as gradient_descent
from ._ensemble import gradient_descent_mse_ensemble as gradient_descent_mse_ensemble
from ._gp import Gaussian as Gaussian, Kernel as Kernel, gp_inference as gp_inference
from ._learning_rate import max_learning_rate as max_learning_rate
from ._mse import gradient_descent_mse as gradient_descent_mse
