using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray
{
    /// <summary>Raised (outside any lock) with a one-line description whenever the array state changes.</summary>
    public event Action<string>? StateChanged;

    private void Notify(string message) => StateChanged?.Invoke($"{Name}: {message}");

    /// <summary>
    /// True once more roles are out of sync than the level tolerates. The failure that crossed the line is not
    /// written to the superblocks, nor is any change after it: the disks keep the last state the array could run
    /// in, so when that member comes back (a cable, a controller reset, power) the array assembles with it and
    /// every acknowledged write is there. (md does the same for the last working disk of a RAID-1.)
    /// </summary>
    private bool _failed;

    /// <summary>Roles without a member in sync on every stripe.</summary>
    private int RolesOutOfSync() => _roles.Count(m => m is not { State: MemberState.Active });

    /// <summary>
    /// Marks a member faulty and persists it before returning, so no write acknowledged afterwards can be read
    /// back from the stale member after a restart. Starts a rebuild onto a spare when one is free. A failure
    /// the level cannot tolerate fails the array instead (see <see cref="_failed"/>).
    /// </summary>
    private async Task FailMemberAsync(Member member, string reason)
    {
        bool arrayFailed;
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (member.State == MemberState.Faulty)
                return;
            if (!_spares.Remove(member))
                CancelRebuild(member);
            bool wasFailed = _failed;
            member.State = MemberState.Faulty;
            await PersistLockedAsync().ConfigureAwait(false);
            arrayFailed = _failed && !wasFailed;
        }
        finally
        {
            _stateLock.Release();
        }
        Notify($"member {member.Device.Name} failed: {reason}");
        if (arrayFailed)
            Notify($"the array has failed: {RolesOutOfSync()} of {Geometry.MemberCount} roles are out of sync; the disks keep the state before this failure, so stop it and assemble it again once the disk is back");
        if (_options.AutoRebuild)
            await StartRebuildOnSpareAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Writes the current state to every live member and spare (events + 1). A member that cannot take its
    /// superblock is failed and the state written again. Caller holds the state lock.
    /// </summary>
    private async Task PersistLockedAsync(bool clean = false)
    {
        while (true)
        {
            // A state the level cannot run in is never written (see _failed).
            _failed |= RolesOutOfSync() > Geometry.ParityCount;
            if (_failed)
                return;
            ulong events = Interlocked.Increment(ref _events);
            ulong sequence = ++_sequence;
            var roles = new RoleRecord[_roles.Length];
            for (int i = 0; i < roles.Length; i++)
            {
                var holder = _roles[i];
                roles[i] = holder is null
                    ? new RoleRecord(_absentIds[i], MemberState.Missing, 0)
                    : new RoleRecord(holder.Id, holder.State, holder.RebuildCheckpoint) { ResyncFromBitmap = holder.ResyncFromBitmap };
            }
            (long, long)[] bad;
            lock (_badBlocks)
                bad = [.. _badBlocks];
            var targets = new List<(Member Member, int Role)>();
            for (int i = 0; i < _roles.Length; i++)
            {
                if (_roles[i] is { Writable: true } member)
                    targets.Add((member, i));
            }
            targets.AddRange(_spares.Select(spare => (spare, -1)));
            if (_journalDevice is { State: MemberState.Active } journal)
                targets.Add((journal, Superblock.JournalRole));
            var writes = targets.Select(target => MemberLabel.WriteAsync(target.Member.Device, new Superblock
            {
                ArrayId = Id,
                MemberId = target.Member.Id,
                Sequence = sequence,
                Events = events,
                Geometry = Geometry,
                JournalOffset = JournalOffset,
                JournalSlots = JournalSlots,
                JournalDevice = _journalDevice?.Id ?? Guid.Empty,
                BitmapOffset = BitmapOffset,
                BitmapBytes = BitmapBytes,
                BitmapRegionStripes = BitmapRegionStripes,
                Role = target.Role,
                Clean = clean,
                Name = Name,
                Roles = roles,
                BadBlocks = bad,
            })).ToArray();
            bool failed = false;
            for (int i = 0; i < writes.Length; i++)
            {
                try
                {
                    await writes[i].ConfigureAwait(false);
                }
                catch (BlockDeviceException e) when (targets[i].Role == Superblock.JournalRole)
                {
                    // Its journal writes fail too, so writes stop with JournalDeviceException; the members' labels still name it.
                    targets[i].Member.State = MemberState.Faulty;
                    Notify($"journal device {targets[i].Member.Device.Name}: label write failed ({e.Message}); journalled writes will fail until it is replaced");
                }
                catch (BlockDeviceException)
                {
                    failed = true;
                    var member = targets[i].Member;
                    member.State = MemberState.Faulty;
                    _spares.Remove(member);
                    CancelRebuild(member);
                }
            }
            if (!failed)
                return;
            if (_options.AutoRebuild)
                _ = Task.Run(StartRebuildOnSpareAsync);   // runs once the caller releases the state lock
        }
    }

    /// <summary>Persists the state under the state lock.</summary>
    private async Task PersistAsync(bool clean = false)
    {
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await PersistLockedAsync(clean).ConfigureAwait(false);
        }
        finally
        {
            _stateLock.Release();
        }
    }

    /// <summary>Marks the member that holds <paramref name="role"/> faulty, as if it had failed (mdadm --fail).</summary>
    public async Task FailAsync(int role)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(role);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(role, _roles.Length);
        var member = _roles[role] ?? throw new ArgumentException($"Array '{Name}': role {role} has no member.", nameof(role));
        if (member.State == MemberState.Active && RolesOutOfSync() + 1 > Geometry.ParityCount)
            throw new InvalidOperationException($"Array '{Name}': failing {member.Device.Name} (role {role}) would leave {Geometry.MemberCount - RolesOutOfSync() - 1} of {Geometry.MemberCount} members in sync, fewer than {ArrayGeometry.Describe(Geometry.Level, Geometry.ParityCount)} needs; refused. Replace or rebuild a failed member first.");
        await FailMemberAsync(member, "failed by request").ConfigureAwait(false);
    }

    /// <summary>
    /// Takes a faulty member out of its role (or a spare out of the array) and returns its device to the
    /// caller, who then owns it. Active or rebuilding members must be failed first.
    /// </summary>
    public async Task<IBlockDevice> RemoveAsync(int role)
    {
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (role == -1)
                throw new ArgumentException($"Array '{Name}': give the role (0 to {_roles.Length - 1}) of a faulty member. A spare holds no role and is not removed; leave its disk out when the array is next assembled.", nameof(role));
            ArgumentOutOfRangeException.ThrowIfNegative(role);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(role, _roles.Length);
            var member = _roles[role] ?? throw new ArgumentException($"Array '{Name}': role {role} is already empty.", nameof(role));
            if (member.State != MemberState.Faulty)
                throw new InvalidOperationException($"Array '{Name}': member {member.Device.Name} in role {role} is {member.State.ToString().ToLowerInvariant()}; fail it first.");
            _roles[role] = null;
            _absentIds[role] = member.Id;   // with a bitmap it can be re-added (only the regions written meanwhile are rebuilt)
            await PersistLockedAsync().ConfigureAwait(false);
            Notify($"member {member.Device.Name} removed from role {role}");
            return member.Device;
        }
        finally
        {
            _stateLock.Release();
        }
    }

    /// <summary>
    /// Adds a disk: it fills an empty or faulty role and is rebuilt, or becomes a spare when every role is
    /// held. Refuses a disk that carries a superblock, a foreign signature or data unless <paramref name="force"/>.
    /// </summary>
    /// <exception cref="ArrayConfigurationException">The disk is in use, too small, or has the wrong sector size.</exception>
    /// <remarks>
    /// A disk that left a role of this array (removed, or absent at assembly) and whose role is still empty is re-added
    /// instead (md's <c>--re-add</c>) when the array keeps a write-intent bitmap: it takes its role back and only the
    /// regions written since are rebuilt.
    /// </remarks>
    public async Task AddAsync(IBlockDevice device, bool force = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (await TryReAddAsync(device).ConfigureAwait(false))
            return;
        await CheckNewMemberAsync(device, force).ConfigureAwait(false);
        var member = new Member(device, Guid.NewGuid()) { State = MemberState.Active };
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            _spares.Add(member);
            await PersistLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _stateLock.Release();
        }
        Notify($"{device.Name} added as a spare");
        if (_options.AutoRebuild)
            await StartRebuildOnSpareAsync().ConfigureAwait(false);
    }

    private async Task<bool> TryReAddAsync(IBlockDevice device)
    {
        if (_bitmap is null || device.Capacity < Geometry.DataOffset + Geometry.MemberDataSize || AllMembers().Any(m => m.Device.Name == device.Name))
            return false;
        var label = await MemberLabel.ReadAsync(device).ConfigureAwait(false);
        if (label.Superblock is not { } superblock || superblock.ArrayId != Id || superblock.MemberId == Guid.Empty)
            return false;
        int role;
        Member member;
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            role = Array.IndexOf(_absentIds, superblock.MemberId);
            if (role < 0 || _roles[role] is not null)
                return false;
            member = new Member(device, superblock.MemberId) { State = MemberState.Rebuilding, RebuildCheckpoint = 0, ResyncFromBitmap = true };
            _roles[role] = member;
            await PersistLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _stateLock.Release();
        }
        Notify($"{device.Name} re-added to role {role}: resyncing the {BitmapDirtyRegions} of {BitmapRegions} bitmap regions written since it left");
        StartRebuild(role, member);
        return true;
    }

    private async Task CheckNewMemberAsync(IBlockDevice device, bool force)
    {
        if (device.Capacity < Geometry.DataOffset + Geometry.MemberDataSize)
            throw new ArrayConfigurationException($"{device.Name} is too small: array '{Name}' needs {Geometry.DataOffset + Geometry.MemberDataSize} bytes per member; it has {device.Capacity}.");
        if (device.SectorSize > SectorSize)
            throw new ArrayConfigurationException($"{device.Name} has {device.SectorSize}-byte sectors; array '{Name}' uses {SectorSize}-byte sectors.");
        foreach (var existing in AllMembers())
        {
            if (existing.Device.Name == device.Name)
                throw new ArrayConfigurationException($"{device.Name} is already in array '{Name}'.");
        }
        if (_journalDevice?.Device.Name == device.Name)
            throw new ArrayConfigurationException($"{device.Name} is the journal device of array '{Name}'; it cannot also be a member.");
        var label = await MemberLabel.ReadAsync(device).ConfigureAwait(false);
        if (label.Content != DiskContent.Blank && !force)
            throw new ArrayConfigurationException($"{device.Name} holds {label.Description}; refusing to overwrite it. Use force to add it anyway (its contents will be lost).");
    }

    private IEnumerable<Member> AllMembers() => _roles.OfType<Member>().Concat(_spares);

    /// <summary>Moves a free spare into the first empty or faulty role and starts rebuilding it.</summary>
    private async Task StartRebuildOnSpareAsync()
    {
        Member? spare;
        int role = -1;
        await _stateLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_stopped || _spares.Count == 0)
                return;
            for (int i = 0; i < _roles.Length && role < 0; i++)
            {
                if (_roles[i] is null or { State: MemberState.Faulty })
                    role = i;
            }
            if (role < 0)
                return;
            spare = _spares[0];
            _spares.RemoveAt(0);
            var replaced = _roles[role];
            spare.State = MemberState.Rebuilding;
            spare.RebuildCheckpoint = 0;
            _roles[role] = spare;
            await PersistLockedAsync().ConfigureAwait(false);
            if (replaced is not null)
                _retired.Add(replaced);
        }
        finally
        {
            _stateLock.Release();
        }
        Notify($"rebuilding role {role} onto {spare.Device.Name}");
        StartRebuild(role, spare);
    }

    /// <summary>Faulty members replaced by spares: their devices are released when the array stops.</summary>
    private readonly List<Member> _retired = [];
}
