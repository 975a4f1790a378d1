using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

/// <summary>
/// Three replica processes ("meta serve", as <c>storage meta serve</c> runs them) on 127.0.0.1 under a
/// client load; each is killed with SIGKILL and restarted in turn; nothing acknowledged is lost.
/// </summary>
public sealed class RealClusterTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "meta-real-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<int, Process> _processes = [];
    private readonly ITestOutputHelper _output;

    public RealClusterTests(ITestOutputHelper output) => _output = output;

    public void Dispose()
    {
        foreach (var p in _processes.Values)
        {
            try
            {
                if (!p.HasExited)
                    p.Kill();
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
    }

    private static string List(Dictionary<int, IPEndPoint> e) => string.Join(",", e.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"));

    private void Launch(int id, string peers, string clients, bool bootstrap)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in (string[])["meta", "serve", "--id", id.ToString(CultureInfo.InvariantCulture), "--dir", Path.Combine(_root, $"r{id}"),
            "--peers", peers, "--clients", clients, "--tick-ms", "10"])
            info.ArgumentList.Add(a);
        if (bootstrap)
            info.ArgumentList.Add("--bootstrap");
        var p = Process.Start(info)!;
        _processes[id] = p;
        string? first = p.StandardOutput.ReadLine();
        if (first?.Contains("consensus on", StringComparison.Ordinal) != true)
            Assert.Fail($"replica {id} did not start: {first} {p.StandardError.ReadToEnd()}");
        _output.WriteLine(first);
        // Keep draining its output so a chatty replica never blocks on a full pipe.
        _ = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        _ = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Killing_and_restarting_each_replica_in_turn_loses_nothing_acknowledged()
    {
        var peerMap = Enumerable.Range(1, 3).ToDictionary(i => i, _ => new IPEndPoint(IPAddress.Loopback, Ports.Free()));
        var clientMap = Enumerable.Range(1, 3).ToDictionary(i => i, _ => new IPEndPoint(IPAddress.Loopback, Ports.Free()));
        string peers = List(peerMap), clients = List(clientMap);
        for (int id = 1; id <= 3; id++)
            Launch(id, peers, clients, bootstrap: true);

        using var client = new MetadataClient(clientMap) { AttemptTimeout = TimeSpan.FromSeconds(1), Timeout = TimeSpan.FromSeconds(20) };
        var acked = new Dictionary<string, string>();
        int n = 0;
        async Task Load(int count)
        {
            for (int i = 0; i < count; i++, n++)
            {
                var r = await client.ExecuteAsync(new PutCommand($"key{n % 50}", Encoding.UTF8.GetBytes($"value{n}")), TestContext.Current.CancellationToken);
                Assert.True(r.IsOk, $"{r.Code} {r.Message}");
                acked[$"key{n % 50}"] = $"value{n}";
            }
        }
        await Load(50);
        for (int victim = 1; victim <= 3; victim++)
        {
            _processes[victim].Kill(); // SIGKILL: no flush, no goodbye
            await _processes[victim].WaitForExitAsync(TestContext.Current.CancellationToken);
            _processes[victim].Dispose();
            _processes.Remove(victim);
            await Load(40);
            Launch(victim, peers, clients, bootstrap: false);
            await Load(20);
        }
        foreach (var (key, value) in acked)
            Assert.Equal(value, Encoding.UTF8.GetString((await client.ReadAsync(key, TestContext.Current.CancellationToken)).Value.Span));

        var status = new StringWriter();
        int rc = Storage.Cli.Cli.Run(["meta", "status", "--clients", clients], status, status);
        _output.WriteLine(status.ToString());
        Assert.Equal(0, rc);
        Assert.Contains("lag behind leader", status.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_errors_exit_2()
    {
        var err = new StringWriter();
        Assert.Equal(2, Storage.Cli.Cli.Run(["meta", "serve", "--peers", "1=127.0.0.1:1"], err, err));
        Assert.Contains("serve needs --id", err.ToString(), StringComparison.Ordinal);
        Assert.Equal(2, Storage.Cli.Cli.Run(["meta", "frobnicate", "--peers", "1=127.0.0.1:1"], err, err));
        Assert.Contains("Run 'storage meta --help'", err.ToString(), StringComparison.Ordinal);
        Assert.Equal(2, Storage.Cli.Cli.Run(["meta", "status", "--peers", "nonsense"], err, err));
        Assert.Contains("bad endpoint 'nonsense'", err.ToString(), StringComparison.Ordinal);
    }
}
