using System.Buffers;
using Storage.Devices;

namespace Storage.Volumes;

// A segment's copies change while the device serves them: a move adds the copy it fills, then drops the one it empties.
public sealed partial class SpannedVolumeDevice
{
    /// <summary>Bytes a move copies at a time: writes to the segment wait only while they reach into the piece being copied.</summary>
    private const int FillChunk = 1 << 20;

    private int _filling;

    /// <summary>
    /// Whether <see cref="AdoptAsync"/> can take <paramref name="volume"/> in place: the same live volume with the same
    /// size and segments, only their copies differ.
    /// </summary>
    public bool CanAdopt(SpannedVolume volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        var now = _layout.Volume;
        return _snapshot is null && !IsDisposed && volume.Name == now.Name && volume.SizeBytes == now.SizeBytes && volume.SegmentBytes == now.SegmentBytes
            && volume.Segments.Count == now.Segments.Count;
    }

    /// <summary>
    /// Serves <paramref name="volume"/> from now on without closing: copies it adds are opened from
    /// <paramref name="pools"/>, copies it drops are closed. Requests in flight finish on the old copies first (reads
    /// and writes are held for that moment), so a dropped copy is no longer used when this returns. With
    /// <paramref name="decide"/>, the switch happens only if it returns true, and it runs while requests are held: no
    /// request reaches a dropped copy once the decision is made. Returns whether the device switched.
    /// </summary>
    /// <exception cref="ArgumentException">Not a record <see cref="CanAdopt"/> takes.</exception>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    /// <exception cref="IOException">A pool cannot be reached.</exception>
    public async Task<bool> AdoptAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools, Func<Task<bool>>? decide = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pools);
        if (!CanAdopt(volume))
            throw new ArgumentException($"Volume '{Name}' cannot take that record in place: its size or segments differ.", nameof(volume));
        await _adopting.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            volume = WithOwnStale(volume);
            var old = _layout;
            var reuse = new Dictionary<(int, string), IBlockDevice>();
            for (int i = 0; i < old.Segments.Length; i++)
            {
                for (int c = 0; c < old.Segments[i].All.Length; c++)
                {
                    if (volume.Segments[i].Contains(old.Segments[i].Pools[c]))
                        reuse[(i, old.Segments[i].Pools[c])] = old.Segments[i].All[c];
                }
            }
            var layout = await OpenAllAsync(volume, pools, reuse, _readPolicy, null, cancellationToken).ConfigureAwait(false);
            for (int i = 0; i < layout.Segments.Length; i++)
            {
                // The same fill goes on (of a move or a resync): its copier keeps the window it guards writes with.
                if (old.Segments[i].Window is { } window && layout.Segments[i].Window is not null && Filling(old.Segments[i]).SequenceEqual(Filling(layout.Segments[i])))
                    layout.Segments[i] = layout.Segments[i] with { Window = window };
            }
            var kept = layout.Segments.SelectMany(s => s.All).ToHashSet();
            bool switched = false;
            await HoldAsync(reads: true).ConfigureAwait(false);
            try
            {
                if (decide is null || await decide().ConfigureAwait(false))
                {
                    _layout = layout;
                    switched = true;
                    DropUnwritten();   // a copy that failed while this adopt was building the layout stays out
                }
            }
            finally
            {
                ResumeWrites();
                var closing = switched ? old.Segments.SelectMany(s => s.All).Where(d => !kept.Contains(d)) : layout.Segments.SelectMany(s => s.All).Where(d => !reuse.ContainsValue(d));
                foreach (var device in closing.ToList())
                    device.Dispose();
            }
            return switched;
        }
        finally
        {
            _adopting.Release();
        }
    }

    /// <summary>
    /// Fills the copy that <see cref="SpannedVolume.Move"/> adds from a readable copy while the volume is written:
    /// piece by piece, writes reaching into the piece being copied wait for it. Holes are not copied (what the copy
    /// holds there is trimmed). Ends with a flush of the new copy, which then holds every byte the others do and gets
    /// every write after. Returns the bytes of data copied.
    /// </summary>
    /// <exception cref="VolumeException">No move in progress, one fill is running already, or the move was finished or cancelled meanwhile.</exception>
    /// <exception cref="IOException">A copy failed; nothing is lost, and the move can be filled again.</exception>
    public Task<long> FillAsync(IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        var move = _layout.Volume.Move ?? throw new VolumeException($"Volume '{Name}' has no segment move in progress.");
        return FillAsync(move.Segment, move.To, progress, cancellationToken);
    }

    /// <summary>The pools of the copies of <paramref name="segment"/> that are written but not read (being filled).</summary>
    private static IEnumerable<string> Filling(SegmentCopies segment)
        => segment.Pools.Where((_, c) => Array.IndexOf(segment.Readable, c) < 0);

    /// <summary>Fills the copy of segment <paramref name="index"/> on pool <paramref name="pool"/> (written, not read) as <see cref="FillAsync(IProgress{long}?, CancellationToken)"/> does.</summary>
    private async Task<long> FillAsync(int index, string pool, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var layout = _layout;
        var segment = layout.Segments[index];
        var window = segment.Window ?? throw new VolumeException($"Volume '{Name}' is not served live here.");
        if (!Filling(segment).Contains(pool, StringComparer.Ordinal) || segment.Readable.Length == 0)
            throw new VolumeException($"The copy of segment {index} of volume '{Name}' on pool '{pool}' is not being filled.");
        if (Interlocked.Exchange(ref _filling, 1) != 0)
            throw new VolumeException($"Volume '{Name}' has a copy being filled already.");
        byte[] buffer = ArrayPool<byte>.Shared.Rent(FillChunk);
        try
        {
            var target = segment.All[Array.IndexOf(segment.Pools, pool)];
            var source = segment.All[segment.Readable[0]];
            long size = layout.Volume.SegmentSize(index), copied = 0;
            for (long at = 0; at < size; at += FillChunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var now = _layout.Segments[index];
                if (!ReferenceEquals(now.Window, window) || Array.IndexOf(now.All, target) < 0 || Array.IndexOf(now.All, source) < 0)
                    throw new VolumeException($"The fill of segment {index} of volume '{Name}' on pool '{pool}' was finished, cancelled or cut short by a failed copy meanwhile.");
                long end = Math.Min(size, at + FillChunk);
                await window.OpenAsync(at, end).ConfigureAwait(false);
                try
                {
                    copied += await CopyAsync(source, target, at, end - at, buffer, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    window.Close();
                }
                progress?.Report(end);
            }
            if (!ReferenceEquals(_layout.Segments[index].Window, window))   // swapped while the last piece was copied: that piece may have missed a write
                throw new VolumeException($"The fill of segment {index} of volume '{Name}' on pool '{pool}' was finished, cancelled or cut short by a failed copy meanwhile.");
            await target.FlushAsync(cancellationToken).ConfigureAwait(false);
            return copied;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            Volatile.Write(ref _filling, 0);
        }
    }

    /// <summary>Copies [offset, offset + length) of <paramref name="source"/> to <paramref name="target"/>; returns the bytes of data copied.</summary>
    private static async Task<long> CopyAsync(IBlockDevice source, IBlockDevice target, long offset, long length, byte[] buffer, CancellationToken cancellationToken)
    {
        long copied = 0;
        for (long at = offset, end = offset + length; at < end;)
        {
            foreach (var (run, zero) in await RunsAsync(source, at, end - at, cancellationToken).ConfigureAwait(false))
            {
                var piece = buffer.AsMemory(0, (int)run);
                if (!zero)
                    await source.ReadAsync(at, piece, cancellationToken).ConfigureAwait(false);
                if (zero || !piece.Span.ContainsAnyExcept((byte)0))
                {
                    await ClearAsync(target, at, run, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await target.WriteAsync(at, piece, forceUnitAccess: false, cancellationToken).ConfigureAwait(false);
                    copied += run;
                }
                at += run;
            }
        }
        return copied;
    }

    /// <summary>Runs of [offset, offset + length) that read as zeros or may hold data (the whole range as data when the device cannot say).</summary>
    private static async Task<IEnumerable<(long Length, bool Zero)>> RunsAsync(IBlockDevice device, long offset, long length, CancellationToken cancellationToken)
    {
        if (device is not IAllocationStatus map)
            return [(length, false)];
        var extents = await map.GetAllocationAsync(offset, length, cancellationToken).ConfigureAwait(false);
        if (extents.Count == 0)
            return [(length, false)];
        return extents.Select(e => (Math.Min(e.Length, length), (e.State & AllocationState.Zero) != 0));
    }

    /// <summary>Makes [offset, offset + length) of <paramref name="target"/> read as zeros, trimming only what holds data there.</summary>
    private static async Task ClearAsync(IBlockDevice target, long offset, long length, CancellationToken cancellationToken)
    {
        for (long at = offset, end = offset + length; at < end;)
        {
            foreach (var (run, zero) in await RunsAsync(target, at, end - at, cancellationToken).ConfigureAwait(false))
            {
                if (!zero)
                    await target.TrimAsync(at, run, cancellationToken).ConfigureAwait(false);
                at += run;
            }
        }
    }
}
