using System.Runtime.CompilerServices;
using Storage.Devices;

namespace Storage.Raid;

// The write-intent bitmap (see WriteIntentBitmap): marking before member writes, persisting, lazy clearing, and the
// regions a resync or a re-add has to rewrite.
public sealed partial class RaidArray
{
    /// <summary>Most bytes a bitmap may take on each member (2^18 regions).</summary>
    internal const int MaxBitmapBytes = 32 * 1024;

    private WriteIntentBitmap? _bitmap;
    private readonly SemaphoreSlim _bitmapGate = new(1, 1);
    private byte[] _bitmapBuffer = [];
    private CancellationTokenSource? _bitmapCleanerStop;
    private Task? _bitmapCleaner;

    /// <summary>Where the bitmap starts on every member; 0 without one.</summary>
    internal long BitmapOffset { get; private set; }

    /// <summary>Bytes of the bitmap on every member; 0 = no bitmap.</summary>
    internal int BitmapBytes { get; private set; }

    /// <summary>Stripes per bitmap region (0 without a bitmap).</summary>
    public long BitmapRegionStripes => _bitmap?.RegionStripes ?? 0;

    /// <summary>Regions the bitmap marks now (written recently, or not yet cleared).</summary>
    public int BitmapDirtyRegions => _bitmap?.DirtyRegions ?? 0;

    /// <summary>Regions in the bitmap (0 without one).</summary>
    public int BitmapRegions => _bitmap?.Regions ?? 0;

    /// <summary>Stripes per region and bitmap bytes for an array of at most <paramref name="maxStripes"/> stripes.</summary>
    internal static (long RegionStripes, int Bytes) BitmapLayout(long maxStripes, long stripeDataSize, long regionBytes)
    {
        long regionStripes = Math.Max(1, regionBytes / stripeDataSize);
        long mostRegions = MaxBitmapBytes * 8L;
        if ((maxStripes + regionStripes - 1) / regionStripes > mostRegions)
            regionStripes = (maxStripes + mostRegions - 1) / mostRegions;
        int regions = (int)Math.Max(1, (maxStripes + regionStripes - 1) / regionStripes);
        return (regionStripes, WriteIntentBitmap.BytesFor(regions));
    }

    private void UseBitmap(long offset, int bytes, long regionStripes)
    {
        if (bytes == 0)
            return;
        BitmapOffset = offset;
        BitmapBytes = bytes;
        _bitmap = new WriteIntentBitmap(Geometry.StripeCount, regionStripes);
        _bitmapBuffer = new byte[bytes];
    }

    private void StartBitmapCleaner()
    {
        if (_bitmap is null || _options.BitmapClearInterval <= TimeSpan.Zero)
            return;
        _bitmapCleanerStop = new CancellationTokenSource();
        var stop = _bitmapCleanerStop.Token;
        _bitmapCleaner = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await Task.Delay(_options.BitmapClearInterval, stop).ConfigureAwait(false);
                    await ClearIdleBitmapRegionsAsync(stop).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
                // Stopped.
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                Notify($"bitmap cleaner stopped: {e.Message}");
            }
        });
    }

    private async Task StopBitmapCleanerAsync()
    {
        if (_bitmapCleanerStop is null)
            return;
        await _bitmapCleanerStop.CancelAsync().ConfigureAwait(false);
        await _bitmapCleaner!.ConfigureAwait(false);
        _bitmapCleanerStop.Dispose();
        _bitmapCleanerStop = null;
    }

    /// <summary>
    /// Clears the bitmap regions no write has touched since the last call: flushes every member (so what was written
    /// there is durable), clears the regions still idle and writes the bitmap. Does nothing while a role is out of sync:
    /// the marks are what a returning member needs. Runs by itself every <see cref="ArrayRunOptions.BitmapClearInterval"/>.
    /// Returns the regions cleared.
    /// </summary>
    public async Task<int> ClearIdleBitmapRegionsAsync(CancellationToken cancellationToken = default)
    {
        if (_bitmap is null || _stopped || RolesOutOfSync() > 0)
            return 0;
        var idle = _bitmap.Idle();
        if (idle.Count == 0)
            return 0;
        await FlushMembersAsync(long.MaxValue, cancellationToken).ConfigureAwait(false);
        if (RolesOutOfSync() > 0)
            return 0;
        int cleared = _bitmap.Clear(idle);
        if (cleared > 0)
            await PersistBitmapAsync(long.MaxValue, cancellationToken).ConfigureAwait(false);
        return cleared;
    }

    /// <summary>
    /// Marks <paramref name="stripe"/>'s region before a member write; completes once the mark is on every member
    /// (at once when it is already). Every successful call is paired with <see cref="Unmark"/>.
    /// </summary>
    private ValueTask MarkAsync(long stripe, CancellationToken cancellationToken)
    {
        if (_bitmap is null)
            return ValueTask.CompletedTask;
        int region = _bitmap.RegionOf(stripe);
        long needed = _bitmap.Enter(region);
        return needed == 0 ? ValueTask.CompletedTask : MarkSlowAsync(region, needed, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask MarkSlowAsync(int region, long needed, CancellationToken cancellationToken)
    {
        try
        {
            await PersistBitmapAsync(needed, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _bitmap!.Exit(region);
            throw;
        }
    }

    private void Unmark(long stripe)
    {
        if (_bitmap is { } bitmap)
            bitmap.Exit(bitmap.RegionOf(stripe));
    }

    /// <summary>Marks every region of stripes [first, end); pair with <see cref="UnmarkRange"/>.</summary>
    private async Task MarkRangeAsync(long first, long end, CancellationToken cancellationToken)
    {
        if (_bitmap is null)
            return;
        long done = first;
        try
        {
            for (; done < end; done++)
                await MarkAsync(done, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            UnmarkRange(first, done);
            throw;
        }
    }

    private void UnmarkRange(long first, long end)
    {
        for (long stripe = first; stripe < end && _bitmap is not null; stripe++)
            Unmark(stripe);
    }

    /// <summary>
    /// Writes the bitmap as it is now to every writable member (FUA), unless a write that included change
    /// <paramref name="needed"/> finished meanwhile. A member that cannot take it is failed, as for data writes.
    /// </summary>
    private async ValueTask PersistBitmapAsync(long needed, CancellationToken cancellationToken)
    {
        var bitmap = _bitmap!;
        await _bitmapGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (needed != long.MaxValue && bitmap.IsPersisted(needed))
                return;
            long change = bitmap.Snapshot(_bitmapBuffer);
            var writes = new List<(Member Member, Task Write)>();
            foreach (var member in _roles)
            {
                if (member is { Writable: true })
                    writes.Add((member, member.Device.WriteAsync(BitmapOffset, _bitmapBuffer, forceUnitAccess: true, cancellationToken).AsTask()));
            }
            foreach (var (member, write) in writes)
            {
                try
                {
                    await write.ConfigureAwait(false);
                }
                catch (BlockDeviceException e)
                {
                    await FailMemberAsync(member, $"bitmap write failed: {e.Message}").ConfigureAwait(false);
                }
            }
            ThrowIfFailed();
            bitmap.Persisted(change);
        }
        finally
        {
            _bitmapGate.Release();
        }
    }

    /// <summary>Assembly: the union of the bitmaps of every member that holds a role, or of <paramref name="others"/>.</summary>
    private async Task LoadBitmapAsync(IEnumerable<Member> others, CancellationToken cancellationToken)
    {
        if (_bitmap is null)
            return;
        var union = new byte[BitmapBytes];
        var copy = new byte[BitmapBytes];
        foreach (var member in _roles.OfType<Member>().Concat(others).Distinct())
        {
            try
            {
                await member.Device.ReadAsync(BitmapOffset, copy, cancellationToken).ConfigureAwait(false);
            }
            catch (BlockDeviceException)
            {
                continue;   // its stripes are read around; the others' copies carry the marks
            }
            for (int i = 0; i < union.Length; i++)
                union[i] |= copy[i];
        }
        _bitmap.Load(union);
    }

    /// <summary>Stripe ranges a bitmap resync or re-add rewrites: the marked regions (every stripe without a bitmap).</summary>
    private List<(long First, long End)> StripesToResync()
        => _bitmap?.DirtyStripes(Geometry.StripeCount) ?? [(0, Geometry.StripeCount)];
}
