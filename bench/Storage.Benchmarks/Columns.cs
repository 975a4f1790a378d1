using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Storage.Benchmarks;

/// <summary>Throughput in GB/s (10^9 bytes) of data bytes: k·chunk per operation (chunk for MulConst).</summary>
public sealed class ThroughputColumn : IColumn
{
    public string Id => nameof(ThroughputColumn);
    public string ColumnName => "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Data bytes (k x chunk) per second, 10^9";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        => Rate(summary, benchmarkCase) is { } rate ? rate.ToString("0.00", CultureInfo.InvariantCulture) : "-";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => c.Parameters.Items.Any(p => p.Name == "SizeKiB"));

    internal static double? Rate(Summary summary, BenchmarkCase benchmarkCase)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null || stats.Mean <= 0 || !benchmarkCase.Parameters.Items.Any(p => p.Name == "SizeKiB"))
            return null;
        int k = ShapeOf.DataCount((string)benchmarkCase.Parameters["Shape"]);
        int chunk = (int)benchmarkCase.Parameters["SizeKiB"] * 1024;
        return (double)k * chunk / stats.Mean;   // bytes per ns = GB/s
    }
}

/// <summary>Our throughput divided by the named ISA-L path's at the same shape, size and layout.</summary>
public sealed class RatioToIsaLColumn(string baseline) : IColumn
{
    public string Id => nameof(RatioToIsaLColumn) + baseline;
    public string ColumnName => "vs " + baseline;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 1;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => $"Throughput relative to {baseline} in the same run (>1 is faster)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var reference = summary.BenchmarksCases.FirstOrDefault(other =>
            other.Descriptor.Type == benchmarkCase.Descriptor.Type
            && (string)other.Parameters["Kernel"] == baseline
            && SameExceptImpl(other, benchmarkCase));
        if (reference is null || ThroughputColumn.Rate(summary, benchmarkCase) is not { } ours || ThroughputColumn.Rate(summary, reference) is not { } theirs)
            return "-";
        return (ours / theirs).ToString("0.00", CultureInfo.InvariantCulture);
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => c.Parameters.Items.Any(p => p.Name == "SizeKiB"));

    private static bool SameExceptImpl(BenchmarkCase a, BenchmarkCase b)
        => a.Parameters.Items.Where(p => p.Name != "Kernel").All(p => Equals(p.Value, b.Parameters[p.Name]));
}
