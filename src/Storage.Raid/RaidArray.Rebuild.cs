using System.Diagnostics;
using Storage.Devices;

namespace Storage.Raid;

/// <summary>Progress of a rebuild: stripes done of total, rate and estimated time left.</summary>
public sealed record RebuildProgress(int Role, string Device, long StripesDone, long StripesTotal, double BytesPerSecond, TimeSpan? Remaining)
{
    /// <summary>Fraction done, 0 to 1.</summary>
    public double Fraction => StripesTotal == 0 ? 1 : (double)StripesDone / StripesTotal;
}

public sealed partial class RaidArray
{
    private readonly Dictionary<Member, (CancellationTokenSource Cancel, Task Task)> _rebuilds = [];
    private readonly Dictionary<int, RebuildProgress> _rebuildProgress = [];

    /// <summary>Completes when no rebuild is running (each finished or was cancelled), including ones started meanwhile.</summary>
    public async Task WaitForRebuildsAsync()
    {
        while (true)
        {
            Task[] running;
            lock (_rebuilds)
                running = [.. _rebuilds.Values.Select(r => r.Task)];
            if (running.Length > 0)
                await Task.WhenAll(running).ConfigureAwait(false);
            else if (SpareAwaitsRole())
                await Task.Delay(10).ConfigureAwait(false);   // a rebuild onto it is being started
            else
                return;
        }
    }

    /// <summary>The rebuilds in progress.</summary>
    public IReadOnlyList<RebuildProgress> Rebuilds
    {
        get
        {
            lock (_rebuilds)
                return [.. _rebuildProgress.Values];
        }
    }

    private bool SpareAwaitsRole()
    {
        if (!_options.AutoRebuild || _stopped)
            return false;
        lock (_rebuilds)
            return _spares.Count > 0 && _roles.Any(r => r is null or { State: MemberState.Faulty });
    }

    private void StartRebuild(int role, Member member)
    {
        var cancel = new CancellationTokenSource();
        lock (_rebuilds)
        {
            if (_rebuilds.ContainsKey(member))
                return;
            _rebuildProgress[role] = new RebuildProgress(role, member.Device.Name, member.RebuildCheckpoint, Geometry.StripeCount, 0, null);
            var task = Task.Run(() => RebuildAsync(role, member, cancel.Token));
            _rebuilds[member] = (cancel, task);
        }
    }

    private void CancelRebuild(Member member)
    {
        lock (_rebuilds)
        {
            if (_rebuilds.TryGetValue(member, out var rebuild))
                rebuild.Cancel.Cancel();
        }
    }

    /// <summary>
    /// Rebuilds <paramref name="member"/>'s chunks stripe by stripe from the checkpoint on, each under its stripe
    /// lock so user I/O continues around it; persists the checkpoint every few stripes after flushing the member.
    /// </summary>
    private async Task RebuildAsync(int role, Member member, CancellationToken cancellationToken)
    {
        long total = Geometry.StripeCount;
        long start = member.RebuildCheckpoint;
        var clock = Stopwatch.StartNew();
        long written = 0;
        var segments = new StripeBuffer[RebuildWindow];
        try
        {
            for (int i = 0; i < RebuildWindow; i++)
                segments[i] = new StripeBuffer(Geometry.MemberCount, Geometry.ChunkSize);
            var window = new Task[RebuildWindow];
            for (long stripe = start; stripe < total;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (member.State != MemberState.Rebuilding)
                    return;
                long regionEnd = total;
                if (member.ResyncFromBitmap && _bitmap is { } bitmap)
                {
                    // A re-added member holds every write outside the marked regions: skip to the next marked one.
                    long next = stripe;
                    while (next < total && !bitmap.IsDirty(next))
                        next = (bitmap.RegionOf(next) + 1L) * bitmap.RegionStripes;
                    if (next >= total)
                        break;
                    if (next != stripe)
                    {
                        stripe = next;
                        member.RebuildCheckpoint = next;
                    }
                    regionEnd = Math.Min(total, (bitmap.RegionOf(stripe) + 1L) * bitmap.RegionStripes);
                }
                // A few stripes at once, each under its own lock: member I/O overlaps with the parity work.
                int count = (int)Math.Min(RebuildWindow, regionEnd - stripe);
                for (int i = 0; i < count; i++)
                    window[i] = RebuildStripeAsync(stripe + i, role, member, segments[i], cancellationToken);
                await Task.WhenAll(window.AsSpan(0, count)).ConfigureAwait(false);
                written += (long)count * Geometry.ChunkSize;
                long done = stripe + count;
                member.RebuildCheckpoint = done;
                double rate = written / Math.Max(clock.Elapsed.TotalSeconds, 1e-6);
                lock (_rebuilds)
                    _rebuildProgress[role] = new RebuildProgress(role, member.Device.Name, done, total, rate, TimeSpan.FromSeconds((total - done) * (double)Geometry.ChunkSize / Math.Max(rate, 1)));
                if (done / _options.RebuildCheckpointStripes != stripe / _options.RebuildCheckpointStripes)
                    await CheckpointAsync(member, cancellationToken).ConfigureAwait(false);
                await ThrottleAsync(written, clock, cancellationToken).ConfigureAwait(false);
                stripe = done;
            }
            await member.Device.FlushAsync(cancellationToken).ConfigureAwait(false);
            await _stateLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                if (member.State != MemberState.Rebuilding)
                    return;
                member.State = MemberState.Active;
                member.ResyncFromBitmap = false;
                await PersistLockedAsync().ConfigureAwait(false);
            }
            finally
            {
                _stateLock.Release();
            }
            Notify($"rebuild of role {role} onto {member.Device.Name} finished: {written / 1e6:F0} MB in {clock.Elapsed.TotalSeconds:F2} s, {written / 1e6 / Math.Max(clock.Elapsed.TotalSeconds, 1e-6):F0} MB/s");
        }
        catch (OperationCanceledException)
        {
            // Stopped or the member failed: the persisted checkpoint is where the next run resumes.
        }
        catch (BlockDeviceException e)
        {
            await FailMemberAsync(member, $"rebuild write failed: {e.Message}").ConfigureAwait(false);
        }
        finally
        {
            foreach (var segment in segments)
                segment?.Dispose();
            lock (_rebuilds)
            {
                _rebuilds.Remove(member);
                _rebuildProgress.Remove(role);
            }
        }
    }

    /// <summary>Stripes rebuilt at once.</summary>
    private const int RebuildWindow = 4;

    private async Task RebuildStripeAsync(long stripe, int role, Member member, StripeBuffer segment, CancellationToken cancellationToken)
    {
        var lost = new List<int>(Geometry.ParityCount + 1);
        var errors = new List<int>();
        int target = _layout.RowOf(stripe, role);
        var gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lost.Add(target);
            await ReadRowsAsync(stripe, 0, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
            if (lost.Count > Geometry.ParityCount)
            {
                // Too few readable chunks here: record the data chunks that cannot be rebuilt and go on.
                for (int row = 0; row < Geometry.DataCount; row++)
                {
                    if (lost.Contains(row))
                        await AddBadBlockAsync(stripe * Geometry.StripeDataSize + (long)row * Geometry.ChunkSize, Geometry.ChunkSize).ConfigureAwait(false);
                }
                segment.Row(target).Span.Clear();
            }
            else
            {
                _code.Reconstruct(segment.Span, lost.ToArray());
            }
            await member.Device.WriteAsync(_layout.MemberOffset(stripe, 0), segment.Row(target), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task CheckpointAsync(Member member, CancellationToken cancellationToken)
    {
        await member.Device.FlushAsync(cancellationToken).ConfigureAwait(false);
        await PersistAsync().ConfigureAwait(false);
    }

    private async Task ThrottleAsync(long written, Stopwatch clock, CancellationToken cancellationToken)
    {
        long limit = _options.RebuildBytesPerSecond;
        if (limit <= 0)
            return;
        double ahead = written / (double)limit - clock.Elapsed.TotalSeconds;
        if (ahead > 0.001)
            await Task.Delay(TimeSpan.FromSeconds(ahead), cancellationToken).ConfigureAwait(false);
    }
}
