using System.CommandLine;
using System.Globalization;
using Storage.CommandLine;

namespace Storage.EtcdLoad;

/// <summary>Command-line options of the load generator.</summary>
internal sealed class LoadOptions
{
    public string Target = "";
    public string[] Endpoints = [];
    public string Op = "put";
    public int Inflight = 64;
    public double Seconds = 15;
    public double WarmupSeconds = 2;
    public int ValueBytes = 100;
    public int Keys = 100_000;
    public bool Prefill;
    public int[] Pids = [];

    /// <summary>The command line; <paramref name="run"/> gets the checked options.</summary>
    public static RootCommand Command(Func<LoadOptions, Task<int>> run)
    {
        var target = new Option<string>("--target") { Description = "etcd or meta", Required = true };
        target.AcceptOnlyFromAmong("etcd", "meta");
        var endpoints = new Option<string>("--endpoints")
        {
            Description = "etcd: http://127.0.0.1:2379,…  (requests go to the leader); meta: 1=127.0.0.1:7101,… (client ports of storage meta serve)",
            Required = true,
        };
        var op = new Option<string>("--op") { Description = "put, or get (a linearizable read)", DefaultValueFactory = _ => "put" };
        op.AcceptOnlyFromAmong("put", "get");
        var inflight = CliOptions.Number("--inflight", "requests in flight (default 64)", 1, 1 << 16);
        var seconds = SecondsOption("--seconds", "measured seconds (default 15)");
        var warmup = SecondsOption("--warmup", "seconds before measuring (default 2)");
        var valueBytes = CliOptions.Number("--value-bytes", "bytes per value (default 100)", 1, 1 << 24);
        var keys = CliOptions.Number("--keys", "distinct keys (default 100000)", 1, int.MaxValue);
        var prefill = CliOptions.Flag("--prefill", "write keys 0..keys-1 before the measured run (for reads)");
        var pids = new Option<string?>("--pids") { Description = "server processes whose CPU time is sampled at the edges of the measured window", HelpName = "PID,PID,…" };
        var root = new RootCommand("A closed-loop load generator for small puts and linearizable reads against etcd (v3 JSON gateway) or storage meta serve.");
        foreach (var option in new Option[] { target, endpoints, op, inflight, seconds, warmup, valueBytes, keys, prefill, pids })
            root.Options.Add(option);
        root.SetAction(p =>
        {
            var o = new LoadOptions
            {
                Target = p.GetValue(target)!,
                Endpoints = p.GetValue(endpoints)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Op = p.GetValue(op)!,
                Inflight = p.GetValue(inflight) ?? 64,
                Seconds = p.GetValue(seconds) ?? 15,
                WarmupSeconds = p.GetValue(warmup) ?? 2,
                ValueBytes = p.GetValue(valueBytes) ?? 100,
                Keys = p.GetValue(keys) ?? 100_000,
                Prefill = p.GetValue(prefill),
                Pids = [.. (p.GetValue(pids) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(text =>
                    int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int pid) && pid > 0
                        ? pid : throw new UsageException($"--pids: bad pid '{text}'."))],
            };
            if (o.Endpoints.Length == 0)
                throw new UsageException("--endpoints names no endpoint.");
            if (o.Seconds <= 0)
                throw new UsageException("--seconds must be positive.");
            return run(o).GetAwaiter().GetResult();
        });
        return root;
    }

    private static Option<double?> SecondsOption(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "S",
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && value >= 0)
                return value;
            result.AddError($"{name} needs a number of seconds, got '{text}'.");
            return null;
        },
    };
}
