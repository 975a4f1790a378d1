using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Storage.Daemon;

/// <summary>
/// <c>storage daemon</c>: the node's long-running process on Microsoft.Extensions.Hosting. It runs in the foreground,
/// logs one line per event to standard output (journald's format under systemd, which it notifies when ready), and
/// stops cleanly on SIGTERM, SIGINT or a stop request.
/// </summary>
public static class DaemonHost
{
    /// <summary>Runs the daemon until it is stopped; returns the exit code (0 after a clean stop, 1 when it could not start).</summary>
    public static async Task<int> RunAsync(DaemonOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { ApplicationName = "storage", ContentRootPath = Path.GetFullPath(options.Directory) });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Services.AddSystemd();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(2));
        builder.Services.AddSingleton(options with { Directory = Path.GetFullPath(options.Directory) });
        builder.Services.AddSingleton<DaemonService>();
        builder.Services.AddHostedService(services => services.GetRequiredService<DaemonService>());
        using var host = builder.Build();
        // The node starts before the host does, so that a node that cannot start is one logged line and exit code 1.
        if (!await host.Services.GetRequiredService<DaemonService>().PrepareAsync(cancellationToken).ConfigureAwait(false))
            return 1;
        try
        {
            await host.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            return 1;   // the control socket could not be made; logged, and the node closed cleanly
        }
        return Environment.ExitCode;
    }
}

/// <summary>Starts the node and its control socket, publishes the daemon record, and tears all of it down on stop.</summary>
internal sealed class DaemonService(DaemonOptions options, ILoggerFactory loggers, IHostApplicationLifetime lifetime) : IHostedService, IDisposable
{
    private readonly ILogger _log = loggers.CreateLogger("Storage.Daemon");
    private StorageNode? _node;
    private ControlServer? _control;
    private CancellationTokenSource? _watching;
    private Task _leaderWatch = Task.CompletedTask;
    private FileStream? _lock;

    /// <summary>
    /// Takes the directory's lock (one daemon per directory; the kernel lets go of it when a daemon dies, even by
    /// kill -9), then starts the node. False, with the reason logged, when it cannot.
    /// </summary>
    public async Task<bool> PrepareAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (DaemonRecords.Running().FirstOrDefault(r => r.Node == options.Node && r.Dir != options.Directory) is { } other)
                throw new IOException($"node '{other.Node}' already runs here as pid {other.Pid} with directory {other.Dir}; give this one another --node.");
            Directory.CreateDirectory(options.Directory);
            try
            {
                _lock = new FileStream(Path.Combine(options.Directory, "daemon.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                throw new IOException($"another storage daemon runs with directory {options.Directory}; stop it first ('storage daemon stop').");
            }
            _node = await StorageNode.StartAsync(options, loggers, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or TimeoutException or Storage.Nbd.NbdConfigurationException
            or Storage.Metadata.MetadataUnavailableException or Storage.Volumes.VolumeException or DaemonRequestException or System.Net.Sockets.SocketException)
        {
            _log.StartFailed(options.Node, e.Message);
            return false;
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_node is null)
            throw new InvalidOperationException("PrepareAsync first.");
        _node.StopRequested = lifetime.StopApplication;
        try
        {
            _control = new ControlServer(options.ControlSocket, HandleAsync, _log);
            _control.Start();
            Publish();
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            // The pools were opened: close them cleanly before giving up.
            _log.StartFailed(options.Node, e.Message);
            _control?.Dispose();
            _control = null;
            await _node.DisposeAsync().ConfigureAwait(false);
            _node = null;
            throw;
        }
        _watching = new CancellationTokenSource();
        _leaderWatch = WatchLeaderAsync(_watching.Token);
        var cluster = (await _node.HandleAsync(new ClusterStatusRequest(), cancellationToken).ConfigureAwait(false)).Cluster;
        _log.Ready(options.Node, options.ControlSocket, cluster?.Pools.Count(p => p.State == "online") ?? 0, cluster?.Exports ?? 0);
    }

    private async Task<DaemonReply> HandleAsync(DaemonRequest request, CancellationToken cancellationToken)
    {
        var reply = await _node!.HandleAsync(request, cancellationToken).ConfigureAwait(false);
        if (request is AttachPoolRequest or DetachPoolRequest)
            Publish();   // offline commands must see the disks this node now holds
        return reply;
    }

    private void Publish() => DaemonRecords.Write(new DaemonRecord(options.Node, Environment.ProcessId, options.Directory, options.ControlSocket, options.NbdSocket, _node!.NbdTcp, _node.Disks));

    /// <summary>Logs each change of metadata leader (the replicas themselves log nothing).</summary>
    private async Task WatchLeaderAsync(CancellationToken cancellationToken)
    {
        int leader = -2;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                int now = (await _node!.ReplicaViewsAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(r => r.Role == "leader")?.Id ?? -1;
                if (now == leader)
                    continue;
                if (now < 0)
                    _log.NoLeader();
                else if (leader != -2)
                    _log.LeaderChanged(now);
                leader = now;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_node is null)
            return;
        _log.Node(options.Node, "stopping: closing connections, committing pools, marking arrays clean");
        if (_watching is not null)
        {
            await _watching.CancelAsync().ConfigureAwait(false);
            await _leaderWatch.ConfigureAwait(false);
            _watching.Dispose();
            _watching = null;
        }
        _control?.Dispose();
        _control = null;
        DaemonRecords.Delete(options.Node);
        await _node.DisposeAsync().ConfigureAwait(false);
        _node = null;
        _log.Node(options.Node, "stopped cleanly");
    }

    public void Dispose()
    {
        _control?.Dispose();
        _watching?.Dispose();
        _lock?.Dispose();
    }
}
