"""The ``simulated`` genotypes source: an msprime coalescent simulation of related populations.

``populations`` populations split from one ancestral population ``split_time`` generations ago and exchange
migrants symmetrically since. It needs no network, runs in well under a second at the defaults and gives
clearly but imperfectly separated clusters (nearest-centroid accuracy on the top 10 PCs ~0.97), so the
DDVI pipeline can run and be tested offline. The dataset built from it: genotypes.py.
"""

from __future__ import annotations

import logging

import numpy as np

from ._checks import require_int, require_number

__all__ = ["simulate_genotypes"]

log = logging.getLogger("daebench.data.genotypes")  # one logger for the genotypes dataset, whichever module logs


def simulate_genotypes(
    *,
    populations: int,
    samples_per_population: int,
    sequence_length: float,
    mutation_rate: float,
    recombination_rate: float,
    population_size: float,
    migration_rate: float,
    split_time: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Simulate diploid genotypes of ``populations`` related populations with msprime.

    Demography: populations ``pop0``..``pop{K-1}``, each of (diploid) size
    ``population_size``, split from one ancestral population of the same size
    ``split_time`` generations ago and since exchange migrants at the symmetric rate
    ``migration_rate`` (fraction of a population replaced per generation by migrants
    from each other population). Mutations use the binary model, so every site is
    biallelic. Ancestry and mutations are both seeded with ``seed`` (1 <= seed < 2**32,
    msprime's range); results depend on the msprime version.

    Returns
    -------
    G : ndarray, uint8, shape (n_individuals, n_sites)
        Derived-allele count (0, 1 or 2) of each individual at each variable site.
    labels : ndarray, int64, shape (n_individuals,)
        Population index of each individual (individuals are grouped by population).
    names : list of str
        Population names, indexed by label.
    """
    import msprime  # lazy: only the simulated source needs it

    require_int("populations", populations, minimum=1)
    require_int("samples_per_population", samples_per_population, minimum=1)
    require_int("seed", seed, minimum=1)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (msprime), got {seed!r}")
    for key, value, positive in (("sequence_length", sequence_length, True),
                                 ("population_size", population_size, True),
                                 ("split_time", split_time, True),
                                 ("mutation_rate", mutation_rate, False),
                                 ("recombination_rate", recombination_rate, False),
                                 ("migration_rate", migration_rate, False)):
        require_number(key, value, positive=positive)

    names = [f"pop{i}" for i in range(populations)]
    demography = msprime.Demography()
    for name in names:
        demography.add_population(name=name, initial_size=float(population_size))
    demography.add_population(name="ancestral", initial_size=float(population_size))
    if populations > 1 and migration_rate > 0:
        demography.set_symmetric_migration_rate(names, float(migration_rate))
    # The split also ends migration between the derived populations (they become inactive).
    demography.add_population_split(time=float(split_time), derived=names, ancestral="ancestral")

    ts = msprime.sim_ancestry(
        samples={name: int(samples_per_population) for name in names},
        demography=demography,
        ploidy=2,
        sequence_length=float(sequence_length),
        recombination_rate=float(recombination_rate),
        random_seed=int(seed),
    )
    ts = msprime.sim_mutations(ts, rate=float(mutation_rate), model=msprime.BinaryMutationModel(),
                               random_seed=int(seed))

    node_pop = ts.tables.nodes.population
    pop_index = {pop.metadata["name"]: pop.id for pop in ts.populations()}
    label_of = {pop_index[name]: i for i, name in enumerate(names)}
    individuals = list(ts.individuals())
    nodes = np.array([ind.nodes for ind in individuals], dtype=np.int32)  # (n_individuals, 2)
    labels = np.array([label_of[int(node_pop[pair[0]])] for pair in nodes], dtype=np.int64)
    # (n_sites, 2 n_individuals) haplotype alleles 0/1, columns in the order of ``nodes``.
    haplotypes = ts.genotype_matrix(samples=nodes.reshape(-1))
    G = haplotypes.T.reshape(len(individuals), 2, ts.num_sites).sum(axis=1, dtype=np.uint8)
    log.info("simulated %d individuals x %d sites in %d populations", G.shape[0], G.shape[1], populations)
    return G, labels, names

