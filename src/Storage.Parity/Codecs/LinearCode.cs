using System.Buffers;
using System.Collections.Concurrent;
using CommunityToolkit.HighPerformance;

namespace Storage.Parity;

/// <summary>
/// A systematic linear code over GF(2^8) given by its (k+m)×k generator: encoding, single-chunk
/// parity update and erasure decoding, with decode plans cached per erasure pattern.
/// Shared by <see cref="Raid6Codec"/> and <see cref="ReedSolomonCodec"/>. Thread-safe.
/// </summary>
internal sealed unsafe class LinearCode
{
    private const int MaxCachedPlans = 4096;

    private readonly byte[] _generator;
    private readonly ConcurrentDictionary<ErasureSet, DecodePlan> _plans = new();
    private readonly GfCoefficients?[] _updates;

    public LinearCode(byte[] generator, int dataCount, int parityCount, KernelSet kernels)
    {
        _generator = generator;
        DataCount = dataCount;
        ParityCount = parityCount;
        Kernels = kernels;
        Encoder = new GfCoefficients(generator.AsSpan(dataCount * dataCount), parityCount, dataCount);
        _updates = new GfCoefficients?[dataCount];
    }

    public int DataCount { get; }

    public int ParityCount { get; }

    public int RowCount => DataCount + ParityCount;

    public KernelSet Kernels { get; }

    /// <summary>The m×k parity rows of the generator.</summary>
    public GfCoefficients Encoder { get; }

    public ReadOnlySpan<byte> Generator => _generator;

    /// <summary>Parity rows (k..n-1) = Encoder × data rows (0..k-1). <paramref name="output"/> rows replace the stripe's parity rows when given.</summary>
    public void Encode(ReadOnlySpan2D<byte> stripe, Span2D<byte> output)
    {
        int n = RowCount;
        nint* rows = stackalloc nint[n];
        nint* outRows = stackalloc nint[ParityCount];
        fixed (byte* row0 = &stripe.DangerousGetReference())
        fixed (byte* out0 = &output.DangerousGetReference())
        {
            Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, n));
            Stripe.RowAddresses(output, out0, new Span<nint>(outRows, ParityCount));
            Kernels.DotProduct(Encoder, (byte**)rows, (byte**)outRows, stripe.Width, accumulate: false);
        }
    }

    /// <summary>parity[r] ^= G[k+r, index]·(old ^ new) for every parity row, in one pass.</summary>
    public void Update(int index, byte* oldData, byte* newData, byte** parity, nint length)
    {
        var coefficients = _updates[index] ??= BuildUpdate(index);
        byte** inputs = stackalloc byte*[2] { oldData, newData };
        Kernels.DotProduct(coefficients, inputs, parity, length, accumulate: true);
    }

    /// <summary>Rebuilds the rows in <paramref name="lost"/> from the first k surviving rows.</summary>
    public void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost, string paramName)
    {
        int n = RowCount;
        var erased = ErasureSet.From(lost, n, paramName);
        int count = erased.Count;
        if (count == 0)
            return;
        if (count > ParityCount)
            throw new TooManyLostChunksException(count, ParityCount);

        if (!_plans.TryGetValue(erased, out var plan))
            plan = AddPlan(erased);

        nint* rows = stackalloc nint[n];
        byte** inputs = stackalloc byte*[DataCount];
        byte** outputs = stackalloc byte*[count];
        fixed (byte* row0 = &stripe.DangerousGetReference())
        {
            Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, n));
            for (int j = 0; j < DataCount; j++)
                inputs[j] = (byte*)rows[plan.Inputs[j]];
            for (int o = 0; o < count; o++)
                outputs[o] = (byte*)rows[plan.Outputs[o]];
            Kernels.DotProduct(plan.Coefficients, inputs, outputs, stripe.Width, accumulate: false);
        }
    }

    /// <summary>Recomputes the parity rows into scratch memory and reports the rows that differ.</summary>
    public int Verify(ReadOnlySpan2D<byte> stripe, Span<int> mismatched)
    {
        int width = stripe.Width;
        byte[] scratch = ArrayPool<byte>.Shared.Rent(Math.Max(1, ParityCount * width));
        try
        {
            var fresh = new Span2D<byte>(scratch, 0, ParityCount, width, 0);
            Encode(stripe, fresh);
            int found = 0;
            for (int r = 0; r < ParityCount; r++)
            {
                if (fresh.GetRowSpan(r).SequenceEqual(stripe.GetRowSpan(DataCount + r)))
                    continue;
                if (found < mismatched.Length)
                    mismatched[found] = DataCount + r;
                found++;
            }
            return found;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>The decode coefficients for one erasure pattern (exposed for tests).</summary>
    internal DecodePlan PlanFor(ReadOnlySpan<int> lost)
    {
        var erased = ErasureSet.From(lost, RowCount, nameof(lost));
        return _plans.TryGetValue(erased, out var plan) ? plan : AddPlan(erased);
    }

    private DecodePlan AddPlan(ErasureSet erased)
    {
        var plan = BuildPlan(erased);
        if (_plans.Count >= MaxCachedPlans)
            _plans.Clear();
        _plans.TryAdd(erased, plan);
        return plan;
    }

    private DecodePlan BuildPlan(ErasureSet erased)
    {
        int k = DataCount, n = RowCount;
        var inputs = new int[k];
        var outputs = new int[erased.Count];
        for (int row = 0, i = 0, o = 0; row < n; row++)
        {
            if (erased.Contains(row))
                outputs[o++] = row;
            else if (i < k)
                inputs[i++] = row;
        }

        // Rows of the generator that survived, inverted: data = inverse × survivors.
        var survivors = new byte[k * k];
        for (int i = 0; i < k; i++)
            _generator.AsSpan(inputs[i] * k, k).CopyTo(survivors.AsSpan(i * k));
        var inverse = new byte[k * k];
        if (!GfMatrix.TryInvert(survivors, inverse, k))
            throw new InvalidOperationException("The generator matrix is not MDS: a surviving row set is singular.");

        // A lost data row is its row of the inverse; a lost parity row is its generator row times the inverse.
        var matrix = new byte[outputs.Length * k];
        for (int o = 0; o < outputs.Length; o++)
        {
            int row = outputs[o];
            if (row < k)
                inverse.AsSpan(row * k, k).CopyTo(matrix.AsSpan(o * k));
            else
                GfMatrix.Multiply(_generator.AsSpan(row * k, k), inverse, matrix.AsSpan(o * k, k), 1, k, k);
        }
        return new DecodePlan(inputs, outputs, new GfCoefficients(matrix, outputs.Length, k));
    }

    private GfCoefficients BuildUpdate(int index)
    {
        var matrix = new byte[ParityCount * 2];
        for (int r = 0; r < ParityCount; r++)
            matrix[2 * r] = matrix[2 * r + 1] = _generator[(DataCount + r) * DataCount + index];
        return new GfCoefficients(matrix, ParityCount, 2);
    }

    /// <summary>Read <see cref="Inputs"/> (row indices), write <see cref="Outputs"/> (the lost rows).</summary>
    internal sealed record DecodePlan(int[] Inputs, int[] Outputs, GfCoefficients Coefficients);
}
