using Storage.Native;
using Storage.Raid;

namespace Storage.Versioning;

/// <summary>
/// Self-healing. A block whose bytes do not match its entry's checksum is rebuilt by the array from parity with each
/// suspect member (then each pair, up to the parity count) left out; the first rebuild that matches the checksum is
/// returned and written back in place. A block no rebuild matches fails the read: never wrong bytes.
/// </summary>
public sealed partial class Pool
{
    private long _repairs;
    private long _checksumErrors;
    private long _unrecoverable;

    private bool ParityProtected => _array is { Geometry.ParityCount: > 0 };

    private async ValueTask HealAsync(BlockEntry entry, Memory<byte> block, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _checksumErrors);
        long offset = DataOffset + entry.Physical * BlockSize;
        if (_array is { Geometry.ParityCount: > 0 } array)
        {
            ulong roles = array.RolesHolding(offset, block.Length);
            foreach (ulong suspects in Suspects(roles, array.Geometry.MemberCount, array.Geometry.ParityCount))
            {
                try
                {
                    await array.ReadExcludingAsync(offset, block, suspects, cancellationToken).ConfigureAwait(false);
                }
                catch (ArrayFailedException)
                {
                    continue;
                }
                if (Crc32C.Compute(block.Span) != entry.Crc)
                    continue;
                await array.RepairDataAsync(offset, block, cancellationToken).ConfigureAwait(false);
                Interlocked.Increment(ref _repairs);
                _options.Log?.Invoke($"pool {Name}: block {entry.Physical} failed its checksum; rebuilt from parity without member role(s) {RoleList(suspects)} and rewritten");
                return;
            }
        }
        Interlocked.Increment(ref _unrecoverable);
        throw new ChecksumMismatchException($"Pool '{Name}': block {entry.Physical} (at {offset} on '{_device.Name}') does not match its checksum{(ParityProtected ? " and no rebuild from parity matches either" : " and the device has no parity to rebuild it from")}.");
    }

    /// <summary>
    /// The sets of members to rebuild without, smallest first: at most <paramref name="most"/> of the
    /// <paramref name="members"/>, at least one of them holding the block (<paramref name="roles"/>) — the others may be
    /// any member whose rotten chunk would spoil the rebuild.
    /// </summary>
    private static IEnumerable<ulong> Suspects(ulong roles, int members, int most)
    {
        var all = Enumerable.Range(0, members).ToArray();
        for (int size = 1; size <= Math.Min(most, members); size++)
        {
            foreach (ulong subset in Subsets(all, size, 0))
            {
                if ((subset & roles) != 0)
                    yield return subset;
            }
        }
    }

    private static IEnumerable<ulong> Subsets(int[] members, int size, int from)
    {
        if (size == 0)
        {
            yield return 0;
            yield break;
        }
        for (int i = from; i <= members.Length - size; i++)
        {
            foreach (ulong rest in Subsets(members, size - 1, i + 1))
                yield return rest | 1UL << members[i];
        }
    }

    private static string RoleList(ulong roles) => string.Join(", ", Enumerable.Range(0, 64).Where(i => (roles & (1UL << i)) != 0));

    /// <summary>
    /// Reads every block any volume or snapshot refers to and checks it against its checksum, repairing from parity what
    /// fails (as reads do).
    /// </summary>
    public async Task<PoolScrubResult> ScrubAsync(IProgress<PoolProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        List<(long Volume, long Block, BlockEntry Entry)> entries;
        lock (_gate)
        {
            entries = [.. _state.Volumes.Values.SelectMany(v => v.Head.Entries()
                .Concat(v.History.SelectMany(h => h.Value.Select(e => (h.Key, e))))
                .Where(e => e.Item2.IsMapped).Select(e => (v.Id, e.Item1, e.Item2)))];
        }
        entries.Sort((a, b) => a.Entry.Physical.CompareTo(b.Entry.Physical));
        long repairsBefore = Interlocked.Read(ref _repairs), checked_ = 0, unrecoverable = 0;
        var errors = new List<string>();
        var block = new byte[BlockSize];
        foreach (var (volume, logical, entry) in entries)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int epoch = _guard.Enter();
            try
            {
                bool current;
                lock (_gate)
                    // Only an entry that still holds its block: one freed (and perhaps reused) since the listing is not checked.
                    current = _state.Volumes.TryGetValue(volume, out var owner) && PoolState.Holds(owner, logical, entry)
                        && !_buffered.ContainsKey(entry.Physical / SegmentBlocks);
                if (current)
                {
                    await _device.ReadAsync(DataOffset + entry.Physical * BlockSize, block, cancellationToken).ConfigureAwait(false);
                    if (Crc32C.Compute(block) != entry.Crc)
                        await HealAsync(entry, block, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (ChecksumMismatchException e)
            {
                unrecoverable++;
                if (errors.Count < 100)
                    errors.Add(e.Message);
            }
            finally
            {
                _guard.Exit(epoch);
            }
            checked_++;
            progress?.Report(new PoolProgress(checked_ * BlockSize, (long)entries.Count * BlockSize));
        }
        return new PoolScrubResult(checked_, checked_ * BlockSize, Interlocked.Read(ref _repairs) - repairsBefore, unrecoverable, errors);
    }
}
