using System.Globalization;
using Storage.CommandLine;
using Storage.EtcdLoad;

// A closed-loop load generator for small puts and linearizable reads against a three-member etcd cluster
// (through its v3 JSON gateway) or, for reads, against `storage meta serve` replicas. It exists because
// etcd's Go benchmark tool is not packaged; bench/meta/etcd-vs-meta.sh drives it. Prints one line of
// key=value pairs.
return CommandLineRunner.Invoke(LoadOptions.Command(RunAsync), args, Console.Out, Console.Error, "Storage.EtcdLoad");

static async Task<int> RunAsync(LoadOptions o)
{
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        stop.Cancel();
    };

    await using ILoadTarget target = o.Target == "etcd"
        ? await EtcdGateway.ConnectAsync(o.Endpoints, o.Inflight, o.ValueBytes, stop.Token)
        : new MetaTarget(o.Endpoints, o.ValueBytes);

    // One request alone first: it finds the leader and opens the connection before the workers share it
    // (MetadataClient replaces, and disposes, a connection that concurrent first calls race to open).
    await target.PutAsync(0, stop.Token);
    if (o.Prefill)
        await ClosedLoop.PrefillAsync(target, o.Keys, o.Inflight, stop.Token);

    Func<int, CancellationToken, Task> op = o.Op == "put" ? target.PutAsync : target.GetAsync;
    var r = await ClosedLoop.RunAsync(op, o.Inflight, o.Keys, TimeSpan.FromSeconds(o.WarmupSeconds),
        TimeSpan.FromSeconds(o.Seconds), o.Pids, stop.Token);

    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"target={o.Target} op={o.Op} inflight={o.Inflight} value_bytes={o.ValueBytes} seconds={r.Elapsed.TotalSeconds:F2} "
        + $"ops={r.Ops} ops_s={r.OpsPerSecond:F0} p50_ms={r.P50Ms:F2} p99_ms={r.P99Ms:F2} "
        + $"server_cpu_us_op={(o.Pids.Length == 0 ? "n/a" : r.ServerCpuUsPerOp.ToString("F0", CultureInfo.InvariantCulture))} "
        + $"client_cpu_us_op={r.ClientCpuUsPerOp:F0}{(o.Target == "etcd" ? $" leader={target.Describe()}" : "")}"));
    return 0;
}
