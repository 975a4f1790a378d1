using System.Collections.Concurrent;
using Storage.Devices;

namespace Storage.Nbd.Tests;

/// <summary>
/// A memory disk whose reads at chosen offsets wait until the test opens the gate: makes completion order, and the
/// number of requests the server lets run at once, observable.
/// </summary>
internal sealed class GatedDevice(long capacity, int sectorSize = 512) : BlockDevice("gated", capacity, sectorSize)
{
    private readonly ConcurrentDictionary<long, TaskCompletionSource> _gates = new();
    private int _readsStarted;

    public MemoryBlockDevice Inner { get; } = new(capacity, sectorSize);

    /// <summary>Reads that reached the device (including those now waiting at a gate).</summary>
    public int ReadsStarted => Volatile.Read(ref _readsStarted);

    public void Hold(long offset) => _gates[offset] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Open(long offset)
    {
        if (_gates.TryRemove(offset, out var gate))
            gate.SetResult();
    }

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _readsStarted);
        if (_gates.TryGetValue(offset, out var gate))
            await gate.Task.WaitAsync(TimeSpan.FromSeconds(20), cancellationToken);
        await Inner.ReadAsync(offset, buffer, cancellationToken);
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken) =>
        Inner.WriteAsync(offset, buffer, forceUnitAccess, cancellationToken);

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    protected override void Dispose(bool disposing)
    {
        foreach (var gate in _gates.Values)
            gate.TrySetResult();
        Inner.Dispose();
        base.Dispose(disposing);
    }
}
