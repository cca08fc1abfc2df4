/*
 * Berth's launcher (x86-64): the last program a container process runs before its own.
 * src/linux/launcher.rs explains why it exists; build.rs assembles it with the system C
 * compiler into a static, libc-free executable of a few hundred bytes.
 *
 * Berth runs it from a sealed memfd with
 *     argv = { "berth-launcher", "<fd>", "<path>", <the process's argv...> }
 * and it does, with no library and no memory of its own:
 *     refuse unless argv[0] is the marker (the container cannot make it run anything else)
 *     fcntl(fd, F_SETFD, FD_CLOEXEC)       the report socket closes when the exec succeeds
 *     execve(path, &argv[3], envp)
 *     on failure: send 'X' <errno: 4 bytes> <path> on fd, then exit 127
 */
    .intel_syntax noprefix
    .text
    .globl _start
_start:
    mov     rbx, rsp                    /* rbx: argc, then argv[], NULL, envp[], NULL */
    cmp     qword ptr [rbx], 3
    jb      refuse

    /* argv[0] must be the marker, NUL included. */
    mov     rsi, [rbx + 8]
    lea     rdi, [rip + marker]
    mov     ecx, OFFSET marker_len
    repe cmpsb
    jne     refuse

    /* r12d = the report fd, from argv[1] (decimal digits only). */
    mov     rsi, [rbx + 16]
    xor     r12d, r12d
    cmp     byte ptr [rsi], 0
    je      refuse
digit:
    movzx   eax, byte ptr [rsi]
    test    al, al
    jz      digits_done
    sub     eax, '0'
    cmp     eax, 9
    ja      refuse
    cmp     r12d, 100000000
    jae     refuse
    imul    r12d, r12d, 10
    add     r12d, eax
    inc     rsi
    jmp     digit
digits_done:

    /* fcntl(fd, F_SETFD, FD_CLOEXEC): must work, or the socket would reach the program. */
    mov     edi, r12d
    mov     esi, 2                      /* F_SETFD */
    mov     edx, 1                      /* FD_CLOEXEC */
    mov     eax, 72                     /* SYS_fcntl */
    syscall
    test    rax, rax
    js      report

    /* execve(argv[2], &argv[3], envp); envp starts at argv + argc + 1. */
    mov     rdi, [rbx + 24]
    lea     rsi, [rbx + 32]
    mov     rcx, [rbx]
    lea     rdx, [rbx + rcx * 8 + 16]
    mov     eax, 59                     /* SYS_execve */
    syscall

report:
    /* Only a failure gets here: rax = -errno. Message: 'X', errno (little-endian), path,
     * sent with writev from a 48-byte frame: iov[0] at rsp, iov[1] at rsp+16, header at
     * rsp+32. */
    neg     eax
    sub     rsp, 48
    mov     byte ptr [rsp + 32], 'X'
    mov     dword ptr [rsp + 33], eax
    lea     rax, [rsp + 32]
    mov     [rsp], rax                  /* iov[0] = { header, 5 } */
    mov     qword ptr [rsp + 8], 5
    mov     rsi, [rbx + 24]
    xor     ecx, ecx
length:
    cmp     byte ptr [rsi + rcx], 0
    je      length_done
    inc     rcx
    jmp     length
length_done:
    mov     [rsp + 16], rsi             /* iov[1] = { path, strlen(path) } */
    mov     [rsp + 24], rcx
    mov     edi, r12d
    mov     rsi, rsp
    mov     edx, 2
    mov     eax, 20                     /* SYS_writev */
    syscall

refuse:
    mov     edi, 127
    mov     eax, 231                    /* SYS_exit_group */
    syscall
    hlt

    .section .rodata
marker:
    .asciz  "berth-launcher"
    .set    marker_len, . - marker
    .section .note.GNU-stack, "", @progbits
