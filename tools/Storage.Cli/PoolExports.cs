using Storage.Nbd;
using Storage.Versioning;

namespace Storage.Cli;

/// <summary>
/// Keeps a server's exports equal to a pool's volumes (<c>VOL</c>, writable unless the server is read-only) and
/// snapshots (<c>VOL@SNAP</c>, read-only). <see cref="SyncAsync"/> compares the two and adds or withdraws exports;
/// it runs on every <see cref="Pool.Changed"/> and after every command from the control socket, one at a time. A
/// volume whose size changed is withdrawn and offered again (clients see the new size when they reconnect).
/// </summary>
internal sealed class PoolExports(Pool pool, NbdServer server, bool readOnly, Action<string> log) : IAsyncDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, (string Key, PoolVolume Device)> _exported = new(StringComparer.Ordinal);
    private bool _closed;

    /// <summary>For <see cref="Pool.Changed"/>: syncs in the background (the event is raised on a pool thread).</summary>
    public void Changed() => _ = Task.Run(async () =>
    {
        try
        {
            await SyncAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            // Raised as the server stopped.
        }
    });

    public async Task SyncAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_closed)
                return;
            // The key tells an export apart from a new one of the same name (deleted and made again, resized).
            var wanted = new Dictionary<string, (string Key, Func<PoolVolume> Open, bool ReadOnly, string Description)>(StringComparer.Ordinal);
            foreach (var v in pool.ListVolumes())
                wanted[v.Name] = ($"volume {v.Size} {v.Origin}", () => pool.OpenVolume(v.Name), readOnly, $"volume of pool '{pool.Name}', {PoolCommands.Bytes(v.Size)} thin{(v.Origin is null ? "" : $", clone of {v.Origin}")}");
            foreach (var s in pool.ListSnapshots(countSpace: false))
                wanted[s.FullName] = ($"snapshot {s.Version} {s.Size}", () => pool.OpenSnapshot(s.Volume, s.Name), true, $"snapshot of volume '{s.Volume}' taken {s.Created:yyyy-MM-dd HH:mm:ss}Z, read-only");

            foreach (var (name, (key, device)) in _exported.ToList())
            {
                if (wanted.TryGetValue(name, out var want) && want.Key == key)
                    continue;
                await server.RemoveExportAsync(name).ConfigureAwait(false);
                device.Dispose();
                _exported.Remove(name);
                log($"export '{name}' withdrawn");
            }
            foreach (var (name, want) in wanted)
            {
                if (_exported.ContainsKey(name))
                    continue;
                var device = want.Open();
                server.AddExport(new NbdExport(name, device, want.ReadOnly, want.Description));
                _exported[name] = (want.Key, device);
                log($"export '{name}' offered{(want.ReadOnly ? " read-only" : "")}");
            }
        }
        catch (PoolConfigurationException e)
        {
            // Changed between the listing and the opening: the change raises another sync.
            log($"exports not in step with the pool yet: {e.Message}");
        }
        catch (ObjectDisposedException)
        {
            // The server or pool is shutting down.
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops syncing and closes the exported devices (after the server has stopped using them).</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _closed = true;
            foreach (var (_, device) in _exported.Values)
                device.Dispose();
            _exported.Clear();
        }
        finally
        {
            _gate.Release();
        }
        _gate.Dispose();
    }
}
