using Storage.Parity.Kernels;

namespace Storage.Parity;

/// <summary>
/// The registry of kernel sets, fastest first. <see cref="Default"/> is the fastest one this CPU
/// supports, unless the environment variable <c>STORAGE_PARITY_ISA</c> names another
/// (scalar, vector128, avx2, avx512bw, gfni256, gfni512).
/// </summary>
public static class KernelSets
{
    /// <summary>The environment variable that forces a kernel set.</summary>
    public const string EnvironmentVariable = "STORAGE_PARITY_ISA";

    /// <summary>The table-driven reference every other set is tested against.</summary>
    public static KernelSet Scalar { get; } = new ScalarKernels();

    /// <summary>Every kernel set, supported or not, in priority order (best first).</summary>
    public static IReadOnlyList<KernelSet> All { get; } =
    [
        new Gfni512Kernels(),
        new Avx512Kernels(),
        new Gfni256Kernels(),
        new Avx2Kernels(),
        new Vector128Kernels(),
        Scalar,
    ];

    /// <summary>The sets this CPU and runtime support, best first; always ends with <see cref="Scalar"/>.</summary>
    public static IReadOnlyList<KernelSet> Available { get; } = All.Where(set => set.IsSupported).ToArray();

    /// <summary>The best supported set, or the one <c>STORAGE_PARITY_ISA</c> names.</summary>
    /// <exception cref="ParityConfigurationException">The variable names an unknown or unsupported set.</exception>
    public static KernelSet Default => s_default ??= Resolve(Environment.GetEnvironmentVariable(EnvironmentVariable));

    private static KernelSet? s_default;

    /// <summary>The set with this name (case-insensitive).</summary>
    /// <exception cref="ParityConfigurationException">No such set, or this CPU cannot run it.</exception>
    public static KernelSet Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var set = All.FirstOrDefault(s => string.Equals(s.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ParityConfigurationException(
                $"Unknown parity kernel set '{name}'. Choose one of: {string.Join(", ", All.Select(s => s.Name))}.");
        if (!set.IsSupported)
            throw new ParityConfigurationException(
                $"Parity kernel set '{set.Name}' is not supported on this CPU/runtime. Supported here: {string.Join(", ", Available.Select(s => s.Name))}.");
        return set;
    }

    internal static KernelSet Resolve(string? forced)
        => string.IsNullOrWhiteSpace(forced) ? Available[0] : Get(forced);
}
