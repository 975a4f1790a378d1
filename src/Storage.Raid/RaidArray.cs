using Storage.Devices;

namespace Storage.Raid;

/// <summary>
/// A running array over member disks: reads and writes of any sector-aligned range with many requests in
/// flight, degraded operation, journalled stripe updates (no write hole), member failure and replacement,
/// background rebuild with checkpoints, scrub. Create with <see cref="CreateAsync"/>, or
/// <see cref="AssembleAsync"/> from disks that carry its superblocks; <see cref="StopAsync"/> (or dispose)
/// flushes, marks it clean and releases the disks. The array owns the devices given to it. Thread-safe.
/// </summary>
public sealed partial class RaidArray : IBlockDevice, IAsyncDisposable
{
    private const int LockStripes = 1024;

    private readonly Member?[] _roles;
    private readonly Guid[] _absentIds;   // for each empty role, the member that left it (Guid.Empty: none known)
    private readonly List<Member> _spares = [];
    private readonly StripeCode _code;
    private readonly StripeLayout _layout;
    private readonly SemaphoreSlim[] _stripeLocks = new SemaphoreSlim[LockStripes];
    private readonly SemaphoreSlim _stateLock = new(1, 1);
    private readonly List<(long Offset, long Length)> _badBlocks = [];
    private readonly ArrayRunOptions _options;
    private ulong _events;
    private ulong _sequence;
    private bool _stopped;

    private RaidArray(Guid id, string name, ArrayGeometry geometry, long journalOffset, int journalSlots, Member?[] roles, ulong events, ArrayRunOptions options, Member? journalDevice = null)
    {
        _journalDevice = journalDevice;
        Id = id;
        Name = name;
        Geometry = geometry;
        JournalOffset = journalOffset;
        JournalSlots = journalSlots;
        _roles = roles;
        _absentIds = new Guid[roles.Length];
        _events = events;
        _options = options;
        _code = StripeCode.For(geometry, options.Kernels);
        _layout = new StripeLayout(geometry);
        for (int i = 0; i < LockStripes; i++)
            _stripeLocks[i] = new SemaphoreSlim(1, 1);
        _journal = new JournalRing(journalSlots);
        _requests = StripeRequest.Pool(geometry.MemberCount);
    }

    /// <summary>Array identity.</summary>
    public Guid Id { get; }

    /// <summary>Array name.</summary>
    public string Name { get; }

    /// <summary>Stops the array (see <see cref="StopAsync"/>).</summary>
    public void Dispose() => StopAsync().GetAwaiter().GetResult();

    /// <summary>Shape of the array.</summary>
    public ArrayGeometry Geometry { get; }

    /// <summary>User-visible bytes.</summary>
    public long Capacity => Geometry.Capacity;

    /// <summary>Sector size of the array: the largest member sector size; offsets and lengths are multiples of it.</summary>
    public int SectorSize { get; private set; } = 512;

    /// <summary>Where the journal starts on every member (or on the journal device); 0 slots when journalling is off.</summary>
    internal long JournalOffset { get; }

    internal int JournalSlots { get; }

    /// <summary>State version: +1 on every change persisted in the superblocks.</summary>
    public ulong Events => Volatile.Read(ref _events);

    /// <summary>How many rows of <paramref name="stripe"/> no member can serve reads for.</summary>
    private int UnavailableAt(long stripe)
    {
        int count = 0;
        for (int row = 0; row < Geometry.MemberCount; row++)
        {
            var member = _roles[_layout.MemberOf(stripe, row)];
            count += member is null || !member.ReadableAt(stripe) ? 1 : 0;
        }
        return count;
    }

    private Member? WritableMember(long stripe, int row)
    {
        var member = _roles[_layout.MemberOf(stripe, row)];
        return member is { Writable: true } ? member : null;
    }

    private SemaphoreSlim StripeLock(long stripe) => _stripeLocks[(int)(stripe % LockStripes)];

    private void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_stopped, this);
        if (offset < 0 || length < 0 || offset > Capacity - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"Array '{Name}': range at {offset} of {length} bytes is outside the array ({Capacity} bytes).");
        if ((offset | length) % SectorSize != 0)
            throw new ArgumentException($"Array '{Name}': offset {offset} and length {length} must be multiples of the {SectorSize}-byte sector.", nameof(offset));
    }

    /// <summary>Throws <see cref="ArrayFailedException"/> when more roles are gone than the level tolerates.</summary>
    private void ThrowIfFailed()
    {
        int gone = 0;
        foreach (var member in _roles)
            gone += member is { Writable: true } ? 0 : 1;
        if (gone > Geometry.ParityCount)
            throw new ArrayFailedException($"Array '{Name}' has failed: {gone} of {Geometry.MemberCount} members are unavailable and {ArrayGeometry.Describe(Geometry.Level, Geometry.ParityCount)} tolerates {Geometry.ParityCount}. Stop it and assemble it with the missing members.");
    }
}
