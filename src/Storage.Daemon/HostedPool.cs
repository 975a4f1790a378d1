using Microsoft.Extensions.Logging;
using Storage.Devices;
using Storage.Metadata;
using Storage.Raid;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// A pool this node hosts: the device under it (an assembled array, or one file or block device), the open pool, and
/// its part in volume transactions. Its catalogue record names it and its members as <c>NODE:PATH</c>.
/// </summary>
internal sealed class HostedPool : IAsyncDisposable
{
    private HostedPool(IBlockDevice device, Pool pool, string layout, IReadOnlyList<string> members)
    {
        Device = device;
        Pool = pool;
        Layout = layout;
        Members = members;
        Participant = new PoolParticipant(pool.Name, pool);
    }

    public IBlockDevice Device { get; }

    public Pool Pool { get; }

    public string Name => Pool.Name;

    /// <summary>"device", or the array's geometry.</summary>
    public string Layout { get; }

    /// <summary>The member paths on this node.</summary>
    public IReadOnlyList<string> Members { get; }

    public PoolParticipant Participant { get; }

    /// <summary>The catalogue record of this pool on <paramref name="node"/>.</summary>
    public PoolRecord Record(string node) => new(Name, [new ArrayRecord(1, Layout, [.. Members.Select(m => $"{node}:{m}")])]);

    /// <summary>The node and paths a catalogue record names.</summary>
    public static (string Node, IReadOnlyList<string> Paths) Locate(PoolRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var members = record.Arrays.SelectMany(a => a.Members).ToList();
        var nodes = members.Select(m => m.Split(':', 2)[0]).Distinct(StringComparer.Ordinal).ToList();
        if (nodes.Count != 1 || members.Any(m => !m.Contains(':', StringComparison.Ordinal)))
            throw new InvalidDataException($"Pool record '{record.Name}' does not name its members as NODE:PATH on one node.");
        return (nodes[0], [.. members.Select(m => m.Split(':', 2)[1])]);
    }

    /// <summary>
    /// Opens the pool on <paramref name="paths"/>: one path is a pool on that device, several are the members of its
    /// array, assembled first (with what assembly noticed logged).
    /// </summary>
    /// <exception cref="DaemonRequestException">A path cannot be opened, the array does not assemble, or it holds no pool.</exception>
    public static async Task<HostedPool> OpenAsync(IReadOnlyList<string> paths, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(loggers);
        if (paths.Count == 0)
            throw new DaemonRequestException("A pool needs its disks: one device, or the members of its array.");
        var full = paths.Select(Path.GetFullPath).ToList();
        var devices = new List<IBlockDevice>();
        IBlockDevice device;
        string layout = "device";
        try
        {
            foreach (string path in full)
                devices.Add(DevicePaths.Open(path));
            if (devices.Count == 1)
            {
                device = devices[0];
            }
            else
            {
                var log = loggers.CreateLogger("Storage.Raid");
                var array = await RaidArray.AssembleAsync(devices, cancellationToken: cancellationToken).ConfigureAwait(false);
                foreach (var warning in array.Assembly!.Warnings)
                    log.ArrayWarning(array.Name, warning);
                foreach (var left in array.Assembly.LeftOut)
                    left.Dispose();
                array.StateChanged += log.ArrayChange;
                device = array;
                layout = array.Geometry.ToString();
            }
        }
        catch (Exception e) when (e is FileNotFoundException or IOException or UnauthorizedAccessException or ArrayConfigurationException or BlockDeviceException)
        {
            foreach (var opened in devices)
                opened.Dispose();
            throw new DaemonRequestException($"Cannot open the pool on {string.Join(",", full)}: {e.Message}");
        }
        try
        {
            if (!await Pool.IsPoolAsync(device, cancellationToken).ConfigureAwait(false))
                throw new DaemonRequestException($"{string.Join(",", full)} holds no pool; make one with 'storage pool create {(full.Count == 1 ? "--device" : "--disks")} {string.Join(",", full)} --name NAME' first.");
            var log = loggers.CreateLogger("Storage.Versioning");
            var pool = await Pool.OpenAsync(device, new PoolOpenOptions { Log = log.Event }, cancellationToken).ConfigureAwait(false);
            return new HostedPool(device, pool, layout, full);
        }
        catch
        {
            await CloseAsync(device).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Commits and closes the pool, then stops the array (marked clean) or closes the device.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await Pool.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            Participant.Dispose();
            await CloseAsync(Device).ConfigureAwait(false);
        }
    }

    private static async Task CloseAsync(IBlockDevice device)
    {
        if (device is RaidArray array)
            await array.StopAsync().ConfigureAwait(false);
        else
            device.Dispose();
    }
}

/// <summary>A request the daemon refuses: bad input or state; nothing was changed.</summary>
public sealed class DaemonRequestException(string message) : Exception(message);
