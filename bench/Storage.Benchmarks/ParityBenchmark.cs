using BenchmarkDotNet.Attributes;
using Storage.Parity;
using Storage.Parity.Interop;

namespace Storage.Benchmarks;

/// <summary>
/// Parameters shared by every parity benchmark: the implementation (each kernel set this CPU
/// runs, and ISA-L's own dispatch and AVX2 paths as baselines in the same run), chunk size and layout.
/// </summary>
public abstract unsafe class ParityBenchmark
{
    private static readonly string[] IsaLVariants = ["", "avx2", "avx512"];

    /// <summary>
    /// Our kernel set names and "isa-l", "isa-l-avx2", "isa-l-avx512" where the library and CPU allow,
    /// narrowed by STORAGE_BENCH_KERNELS (comma list) when set.
    /// </summary>
    public IEnumerable<string> Implementations()
    {
        var wanted = Narrowed("STORAGE_BENCH_KERNELS", []).ToHashSet(StringComparer.OrdinalIgnoreCase);
        return AllImplementations().Where(name => wanted.Count == 0 || wanted.Contains(name));
    }

    private IEnumerable<string> AllImplementations()
    {
        if (IsaL.Instance is { } isal)
            foreach (string variant in ComparesIsaLVariants ? IsaLVariants : [""])
                if (isal.TryVariant(variant) is { } f)
                    yield return f.Name;
        foreach (var set in KernelSets.Available)
            yield return set.Name;
    }

    [ParamsSource(nameof(Implementations))]
    public string Kernel { get; set; } = "";

    [ParamsSource(nameof(Sizes))]
    public int SizeKiB { get; set; }

    [ParamsSource(nameof(Layouts))]
    public StripeLayout Layout { get; set; }

    /// <summary>4, 64 and 1024 KiB, or the comma list in STORAGE_BENCH_SIZES (KiB).</summary>
    public static IEnumerable<int> Sizes()
        => Narrowed("STORAGE_BENCH_SIZES", ["4", "64", "1024"]).Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Every layout, or the comma list in STORAGE_BENCH_LAYOUTS.</summary>
    public static IEnumerable<StripeLayout> Layouts()
        => Narrowed("STORAGE_BENCH_LAYOUTS", Enum.GetNames<StripeLayout>()).Select(Enum.Parse<StripeLayout>);

    /// <summary>The default values, or the comma-separated list an environment variable gives to narrow a run.</summary>
    private static IEnumerable<string> Narrowed(string variable, IEnumerable<string> defaults)
        => Environment.GetEnvironmentVariable(variable) is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : defaults;

    protected int Chunk => SizeKiB * 1024;

    /// <summary>Whether ISA-L's per-ISA entry points exist for this operation (otherwise only its dispatch is measured).</summary>
    protected virtual bool ComparesIsaLVariants => true;

    /// <summary>The ISA-L path when <see cref="Kernel"/> names one.</summary>
    protected IsaL.Functions? IsaLPath { get; private set; }

    /// <summary>Our kernel set when <see cref="Kernel"/> names one.</summary>
    protected KernelSet? Kernels { get; private set; }

    protected void ResolveImplementation()
    {
        if (Kernel.StartsWith("isa-l", StringComparison.Ordinal))
        {
            string variant = Kernel.Length > "isa-l".Length ? Kernel["isa-l-".Length..] : "";
            IsaLPath = IsaL.Instance!.TryVariant(variant) ?? throw new InvalidOperationException($"{Kernel} cannot run here.");
            Kernels = null;
        }
        else
        {
            Kernels = KernelSets.Get(Kernel);
            IsaLPath = null;
        }
    }

    /// <summary>Fails the run loudly if an ISA-L call reports an error, instead of timing a no-op.</summary>
    protected static void Check(int isalResult)
    {
        if (isalResult != 0)
            throw new InvalidOperationException($"ISA-L returned {isalResult}.");
    }
}
