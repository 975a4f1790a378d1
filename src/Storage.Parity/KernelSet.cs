namespace Storage.Parity;

/// <summary>
/// One implementation of the parity kernels for one instruction set. Kernels work on raw
/// addresses of pinned or native buffers; the codecs (<see cref="Raid5Codec"/>, <see cref="Raid6Codec"/>,
/// <see cref="ReedSolomonCodec"/>) validate shapes and pin before calling them.
/// Every kernel requires <c>length % 64 == 0</c>, allocates nothing and is thread-safe.
/// A destination may be the very same buffer as an input (in-place accumulation); partial overlap is not allowed.
/// Every kernel loop is marked <c>AggressiveOptimization</c>: the JIT compiles it fully optimised on first use instead
/// of running tier-0 code until tiering catches up, which halved the speed of a short command (a quick benchmark, a
/// scrub of a small array, the first seconds of a rebuild).
/// </summary>
public abstract unsafe class KernelSet
{
    /// <summary>The name used by <see cref="KernelSets.Get"/> and <c>STORAGE_PARITY_ISA</c>.</summary>
    public abstract string Name { get; }

    /// <summary>Whether this CPU and runtime can run the set.</summary>
    public abstract bool IsSupported { get; }

    /// <summary>destination = sources[0] ^ … ^ sources[count-1]; count ≥ 1.</summary>
    internal abstract void Xor(byte** sources, int count, byte* destination, nint length);

    /// <summary>p = Σ data[i], q = Σ g^i·data[i]; count ≥ 1.</summary>
    internal abstract void PqGen(byte** data, int count, byte* p, byte* q, nint length);

    /// <summary>
    /// outputs[o] (^)= Σ_j c[o,j]·inputs[j] for every output, reading each input once per group of outputs.
    /// With <paramref name="accumulate"/> the products are XORed into the outputs' current content.
    /// </summary>
    internal abstract void DotProduct(GfCoefficients coefficients, byte** inputs, byte** outputs, nint length, bool accumulate);

    /// <inheritdoc/>
    public override string ToString() => Name;
}
