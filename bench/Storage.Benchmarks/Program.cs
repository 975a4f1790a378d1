using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Csv;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Perfolizer.Horology;
using Storage.Parity;
using Storage.Parity.Interop;
using Storage.Benchmarks;
using BenchmarkDotNet.Order;

// Parity benchmarks: every kernel set this CPU runs, with ISA-L in the same run.
//   dotnet run -c Release --project bench/Storage.Benchmarks -- --filter '*'
//   dotnet run -c Release --project bench/Storage.Benchmarks -- --filter '*PqGen*'
Console.WriteLine($"Kernel sets available: {string.Join(", ", KernelSets.Available.Select(s => s.Name))}; default {KernelSets.Default.Name}");
Console.WriteLine(IsaL.Instance is null ? $"ISA-L baseline missing: {IsaL.UnavailableReason}" : "ISA-L baseline: libisal.so.2");

var job = Job.Default
    .WithToolchain(InProcessEmitToolchain.Instance)
    .WithWarmupCount(2)
    .WithIterationCount(6)
    .WithIterationTime(TimeInterval.FromMilliseconds(100))
    .WithEvaluateOverhead(false);   // calls take microseconds; the empty-call overhead is noise

var config = ManualConfig.CreateEmpty()
    .AddJob(job)
    .AddLogger(ConsoleLogger.Default)
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddColumnProvider(DefaultColumnProviders.Instance)
    .AddColumn(new ThroughputColumn(), new RatioToIsaLColumn("isa-l"), new RatioToIsaLColumn("isa-l-avx2"), new ArrayRateColumn(iops: false), new ArrayRateColumn(iops: true))
    .HideColumns(Column.Error, Column.StdDev, Column.Median, Column.Job, Column.Gen0)
    .AddExporter(MarkdownExporter.GitHub, CsvExporter.Default)
    .WithOrderer(new DefaultOrderer(SummaryOrderPolicy.Declared));

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
