"""Data parallelism with JAX's own runtime: one mesh over every device of every host, each step's
scene batch sharded along its first axis, parameters and optimizer state replicated. The jitted
step is the same program as on one device; the compiler partitions it and averages the
gradients (and the batch-norm statistics) across devices.

    python train.py ... --scenes-per-step 8                      # every local device (GPUs, TPU cores)
    python train.py ... --coordinator-address HOST0:1234 --num-processes 2 --process-id 0   # host 0 of 2

On a CPU, `JAX_NUM_CPU_DEVICES=4` splits the CPU into 4 devices (what the tests do).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from util import DataError



def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """Joins a multi-process run; with all three left None, a one-process run (nothing to join)."""
    if coordinator_address is None and num_processes is None and process_id is None:
        return
    # CPU devices of several processes talk over gloo; GPUs and TPUs bring their own collectives
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def batch_mesh():
    """A 1-D mesh, axis "batch", over all devices of all processes."""
    return Mesh(np.asarray(jax.devices()), ("batch",))


def check_batch_size(batch_size):
    devices, processes = jax.device_count(), jax.process_count()
    if batch_size % devices:
        raise DataError(f"--scenes-per-step {batch_size} does not divide over the {devices} devices of this run "
                        f"({processes} process(es) x {jax.local_device_count()}): use a multiple of {devices}")


def host_share(batch_size):
    """-> (first, count): the episodes of each global batch of batch_size that this process loads."""
    count = batch_size // jax.process_count()
    return jax.process_index() * count, count


def replicate(tree, mesh):
    """Host arrays -> the same values on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(local_batch, mesh):
    """This process's share of a batch, {key: (B / processes, ...)} numpy -> global (B, ...) arrays
    split along the first axis over the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def is_chief():
    """Process 0 writes checkpoints, metrics and pictures; the others only train."""
    return jax.process_index() == 0
