using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Storage.Native;

/// <summary>
/// The few Linux system calls .NET does not expose, bound once for every layer: O_DIRECT and O_EXCL opens,
/// block-device ioctls, fdatasync/fsync, hole punching, statx, vectored and no-wait I/O, the effective uid and a
/// gathering sendmsg. Variadic C functions (open, fcntl, ioctl) are declared with their fixed argument types, which the
/// Linux x64 and arm64 calling conventions pass the same way.
/// </summary>
internal static partial class LibC
{
    private const string Library = "libc";

    public const int ORdOnly = 0;
    public const int ORdWr = 2;
    public const int OExcl = 0x80;
    public const int OCloExec = 0x80000;

    public const int FGetFl = 3;
    public const int FSetFl = 4;

    public const int FallocFlKeepSize = 0x01;
    public const int FallocFlPunchHole = 0x02;

    /// <summary>BLKGETSIZE64: device size in bytes (u64).</summary>
    public const nuint BlkGetSize64 = 0x80081272;

    /// <summary>BLKSSZGET: logical sector size (int).</summary>
    public const nuint BlkSszGet = 0x1268;

    public const int SeekData = 3;
    public const int SeekHole = 4;

    public const int EIntr = 4;
    public const int ENxio = 6;
    public const int ENoEnt = 2;
    public const int EAcces = 13;
    public const int EPerm = 1;
    public const int EBusy = 16;
    public const int EInval = 22;
    public const int ENoSys = 38;
    public const int EOpNotSupp = 95;

    /// <summary>O_DIRECT, whose value differs between architectures.</summary>
    public static int ODirect => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 or Architecture.RiscV64 or Architecture.LoongArch64 or Architecture.S390x => 0x4000,
        Architecture.Arm64 or Architecture.Arm => 0x10000,
        Architecture.Ppc64le => 0x20000,
        var other => throw new PlatformNotSupportedException($"O_DIRECT is not known for {other}."),
    };

    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(SafeFileHandle fd, nuint request, out ulong value);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(SafeFileHandle fd, nuint request, out int value);

    [LibraryImport(Library, EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport(Library, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int Fdatasync(SafeFileHandle fd);

    /// <summary>off_t is 64-bit only on 64-bit processes; callers check <see cref="Environment.Is64BitProcess"/>.</summary>
    [LibraryImport(Library, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport(Library, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatxPath(int directory, string path, int flags, uint mask, out Statx result);

    [LibraryImport(Library, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatxHandle(SafeFileHandle fd, string path, int flags, uint mask, out Statx result);

    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;

    /// <summary>statx of a path (following links); returns errno, 0 on success.</summary>
    public static int Stat(string path, uint mask, out Statx result) =>
        StatxPath(AtFdCwd, path, 0, mask, out result) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>statx of an open file; returns errno, 0 on success.</summary>
    public static int Stat(SafeFileHandle fd, uint mask, out Statx result) =>
        StatxHandle(fd, "", AtEmptyPath, mask, out result) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public const int EAgain = 11;

    /// <summary>preadv2/pwritev2 flag: fail with EAGAIN instead of waiting (for a disk read, a lock, writeback).</summary>
    public const int RwfNoWait = 0x08;

    private const uint TmpfsMagic = 0x01021994;
    private const uint RamfsMagic = 0x858458f6;

    [LibraryImport(Library, EntryPoint = "pread", SetLastError = true)]
    public static unsafe partial nint Pread(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Library, EntryPoint = "pwrite", SetLastError = true)]
    public static unsafe partial nint Pwrite(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Library, EntryPoint = "preadv2", SetLastError = true)]
    public static unsafe partial nint Preadv2(SafeFileHandle fd, IoVec* vectors, int count, long offset, int flags);

    [LibraryImport(Library, EntryPoint = "pwritev2", SetLastError = true)]
    public static unsafe partial nint Pwritev2(SafeFileHandle fd, IoVec* vectors, int count, long offset, int flags);

    [LibraryImport(Library, EntryPoint = "fstatfs", SetLastError = true)]
    private static unsafe partial int Fstatfs(SafeFileHandle fd, byte* result);

    /// <summary>
    /// True when the open file lives on tmpfs or ramfs: its pages are memory, so reading or writing it never waits
    /// for a disk. (Only meaningful for regular files: a device node's file system is devtmpfs.)
    /// </summary>
    public static unsafe bool IsOnMemoryFileSystem(SafeFileHandle fd)
    {
        // struct statfs starts with f_type (a long on 64-bit Linux, an int on 32-bit; little-endian either way
        // puts the magic in the first four bytes); 256 bytes cover the whole struct on every architecture.
        byte* result = stackalloc byte[256];
        if (Fstatfs(fd, result) != 0)
            return false;
        uint type = *(uint*)result;
        return type is TmpfsMagic or RamfsMagic;
    }


    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenDescriptor(string path, int flags);

    [LibraryImport(Library, EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>
    /// fsync of a directory, which makes a rename or unlink inside it durable. Throws <see cref="IOException"/> with
    /// the errno when it cannot be opened or synced.
    /// </summary>
    public static void SyncDirectory(string path)
    {
        int fd = OpenDescriptor(path, ORdOnly | OCloExec);
        if (fd < 0)
            throw new IOException($"open({path}) failed: {Describe(Marshal.GetLastPInvokeError())}");
        try
        {
            if (Fsync(fd) != 0)
                throw new IOException($"fsync({path}) failed: {Describe(Marshal.GetLastPInvokeError())}");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    private const int AtSymlinkNoFollow = 0x100;
    private const int SocketFileType = 0xC000;

    /// <summary>True when <paramref name="path"/> is a socket (not following a final symbolic link).</summary>
    public static bool IsSocket(string path)
        => StatxPath(AtFdCwd, path, AtSymlinkNoFollow, Statx.TypeMask, out var result) == 0 && result.FileType == SocketFileType;

    [LibraryImport(Library, EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUserId();

    // SOL_SOCKET / SO_PEERCRED on Linux (x86, arm, riscv); struct ucred { pid_t pid; uid_t uid; gid_t gid; }.
    public const int SolSocket = 1;
    public const int SoPeerCred = 17;

    public const int MsgNoSignal = 0x4000;
    public const int MsgMore = 0x8000;
    public const int MsgDontWait = 0x40;

    /// <summary>The most vectors one sendmsg takes (IOV_MAX).</summary>
    public const int MaxVectors = 1024;

    [LibraryImport(Library, EntryPoint = "sendmsg", SetLastError = true)]
    public static unsafe partial nint SendMessage(int socket, MessageHeader* message, int flags);

    /// <summary>Text of an errno value, e.g. "Device or resource busy".</summary>
    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}

/// <summary>struct statx (linux/stat.h); the same layout on every architecture.</summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
internal struct Statx
{
    public const uint TypeMask = 0x1;
    public const uint BlocksMask = 0x400;
    public const uint DioAlignMask = 0x2000;

    public const int TypeBits = 0xF000;
    public const int RegularFile = 0x8000;
    public const int BlockDevice = 0x6000;
    public const int CharacterDevice = 0x2000;
    public const int Directory = 0x4000;

    [FieldOffset(0x00)] public uint Mask;
    [FieldOffset(0x1C)] public ushort Mode;
    [FieldOffset(0x28)] public ulong Size;
    [FieldOffset(0x30)] public ulong Blocks;
    [FieldOffset(0x80)] public uint RdevMajor;
    [FieldOffset(0x84)] public uint RdevMinor;
    [FieldOffset(0x98)] public uint DioMemAlign;
    [FieldOffset(0x9C)] public uint DioOffsetAlign;

    public readonly int FileType => Mode & TypeBits;

    /// <summary>Allocated bytes (st_blocks counts 512-byte units).</summary>
    public readonly long AllocatedBytes => (long)Blocks * 512;

    public readonly string Kind => FileType switch
    {
        RegularFile => "regular file",
        BlockDevice => "block device",
        CharacterDevice => "character device",
        Directory => "directory",
        _ => "special file",
    };
}

/// <summary>struct iovec.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct IoVec
{
    public unsafe byte* Base;
    public nuint Length;
}

/// <summary>
/// struct msghdr (glibc; musl on little-endian 64-bit lays out its int msg_iovlen plus padding in the same bytes).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MessageHeader
{
    public void* Name;
    public uint NameLength;
    public IoVec* Vectors;
    public nuint VectorCount;
    public void* Control;
    public nuint ControlLength;
    public int Flags;
}
