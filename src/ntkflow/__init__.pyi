"""The public names of `ntkflow`, loaded on first use (`__init__.py`: `lazy_loader`).
This file is the one list of them: the type checker reads it, and so does the loader."""

from . import datasets as datasets, models as models, predict as predict
from ._adams import Accuracy as Accuracy, ExponentialAdams as ExponentialAdams
from ._centering import (
    AbstractCentering as AbstractCentering,
    Antisymmetric as Antisymmetric,
    NoCentering as NoCentering,
    Subtract as Subtract,
)
from ._certificate import (
    Certificate as Certificate,
    certify as certify,
    theorem_constants as theorem_constants,
)
from ._errors import InputError as InputError
from ._exponential import ExponentialNTK as ExponentialNTK
from ._flow_options import FlowOptions as FlowOptions
from ._flows import (
    choose_solver as choose_solver,
    get_solver as get_solver,
    solve_flows as solve_flows,
)
from ._gd import GDResult as GDResult, gradient_descent as gradient_descent
from ._linearize import linearize as linearize, taylor_expand as taylor_expand
from ._lipschitz import (
    BetaEstimate as BetaEstimate,
    certified_beta as certified_beta,
    curvature_beta as curvature_beta,
    sampled_beta as sampled_beta,
)
from ._losses import (
    AbstractLoss as AbstractLoss,
    CrossEntropy as CrossEntropy,
    Logistic as Logistic,
    Squared as Squared,
    UserLoss as UserLoss,
    get_loss as get_loss,
)
from ._paths import (
    Budget as Budget,
    FlowPath as FlowPath,
    Gaps as Gaps,
    KernelPath as KernelPath,
    Steps as Steps,
    TestSeries as TestSeries,
)
from ._problem import Problem as Problem
from ._results import Results as Results, ResultsError as ResultsError, load_results as load_results
from ._solution import FlowSolution as FlowSolution, FlowStatus as FlowStatus
from ._spectrum import Spectrum as Spectrum, ntk_spectrum as ntk_spectrum
from ._tangent import TangentFlow as TangentFlow
from ._verify import Check as Check, Verification as Verification, verify as verify
from .datasets import Dataset as Dataset
from .disk._solve import DiskSolveError as DiskSolveError, DiskSolver as DiskSolver
from .disk._store import (
    DiskArray as DiskArray,
    DiskKernel as DiskKernel,
    KernelStoreError as KernelStoreError,
    open_kernel as open_kernel,
)
from .disk._write import kernel_to_disk as kernel_to_disk
from .experiment import RunOutput as RunOutput, run as run
from .infinite._infinite import InfiniteKernel as InfiniteKernel, infinite_kernel as infinite_kernel
from .infinite._infinite_flow import InfiniteFlow as InfiniteFlow, infinite_flow as infinite_flow
from .models import CNN as CNN, MLP as MLP, Shallow as Shallow, from_apply as from_apply
from .ntk._initial_kernel import InitialKernel as InitialKernel, initial_kernel as initial_kernel
from .ntk._jacobian import (
    AbstractNTKMethod as AbstractNTKMethod,
    JacobianContraction as JacobianContraction,
    jacobian as jacobian,
)
from .ntk._kernel import empirical_ntk as empirical_ntk
from .ntk._monte_carlo import (
    MonteCarloEstimate as MonteCarloEstimate,
    monte_carlo_kernel_fn as monte_carlo_kernel_fn,
)
from .ntk._ntk_fn import empirical_ntk_fn as empirical_ntk_fn
from .ntk._ntkvp import NTKVectorProducts as NTKVectorProducts, ntk_operator as ntk_operator
from .ntk._structured import StructuredDense as StructuredDense
from .sweeps._executors import (
    AbstractExecutor as AbstractExecutor,
    LocalProcesses as LocalProcesses,
    RayExecutor as RayExecutor,
)
from .sweeps._grid import SweepError as SweepError
from .sweeps._python_sweep import sweep as sweep
from .sweeps._scaling import ScalingFit as ScalingFit
from .sweeps._sweep import SweepResult as SweepResult, load_sweep as load_sweep

__version__: str
