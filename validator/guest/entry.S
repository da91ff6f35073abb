/*
 * Ring-0 entry of the workload guest. The VMM starts the vCPU here in 64-bit
 * long mode (paging, GDT, TSS and IDT base already loaded). This code fills
 * the IDT with exception stubs and drops to ring 3 with IOPL 3, so that the
 * workload (which runs natively even under instruction-emulating nested KVM)
 * can use port I/O. Everything ring 0 does is a few hundred instructions.
 */
#include "abi.h"

    .section .text.entry, "ax"
    .code64
    .global _start
_start:
    lea isr_table(%rip), %rsi
    mov $GUEST_IDT_GPA, %rdi
    xor %ecx, %ecx
1:  mov (%rsi,%rcx,8), %rax
    mov %ax, (%rdi)
    movw $GUEST_SEL_KCODE, 2(%rdi)
    movw $0x8e00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    add $16, %rdi
    inc %ecx
    cmp $32, %ecx
    jne 1b

    /* CPUID as a kernel sees it, dumped for the VMM (struct guest_cpuid).
     * Ring 0 on purpose: CPUID here exits to KVM and shows the table the VMM
     * set (KVM_SET_CPUID2); on kvm-pvm ring-3 code runs natively and its
     * CPUID shows the physical CPU instead. */
    mov $GUEST_CPUID_GPA, %rdi
    xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, %r8d                /* highest basic leaf */
    mov $0x80000000, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, %r9d                /* highest extended leaf */
    lea cpuid_leaves(%rip), %rsi
    xor %r10d, %r10d
cpuid_row:
    imul $24, %r10, %r11
    lea 8(%rdi,%r11), %r11        /* this row */
    mov (%rsi,%r10,8), %eax       /* leaf */
    mov 4(%rsi,%r10,8), %ecx      /* subleaf */
    mov %eax, (%r11)
    mov %ecx, 4(%r11)
    cmp $0x80000000, %eax
    jae cpuid_ext
    cmp %r8d, %eax
    ja cpuid_absent
    jmp cpuid_read
cpuid_ext:
    cmp %r9d, %eax
    ja cpuid_absent
cpuid_read:
    cpuid
    mov %eax, 8(%r11)
    mov %ebx, 12(%r11)
    mov %ecx, 16(%r11)
    mov %edx, 20(%r11)
    jmp cpuid_next
cpuid_absent:
    movl $0, 8(%r11)
    movl $0, 12(%r11)
    movl $0, 16(%r11)
    movl $0, 20(%r11)
cpuid_next:
    inc %r10
    cmp $GUEST_CPUID_ENTRIES, %r10
    jne cpuid_row
    movabs $GUEST_CPUID_MAGIC, %rax
    mov %rax, (%rdi)

    pushq $GUEST_SEL_UDATA
    pushq $GUEST_USTACK_TOP
    pushq $0x0002                 /* IOPL 0 (the TSS I/O bitmap allows our ports), interrupts off */
    pushq $GUEST_SEL_UCODE
    lea user_entry(%rip), %rax
    push %rax
    iretq

    .text
user_entry:
    mov $GUEST_SEL_UDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    call workload_main
2:  pause
    jmp 2b

/* Exception stubs: frame at RSP is [vector, error, rip, cs, rflags, rsp, ss]. */
.macro ISR_NOERR n
isr\n:
    pushq $0
    pushq $\n
    jmp isr_common
.endm
.macro ISR_ERR n
isr\n:
    pushq $\n
    jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31

isr_common:
    mov (%rsp), %eax
    mov $PORT_EXCEPTION, %dx
    out %eax, %dx
3:  cli
    hlt
    jmp 3b

    .section .rodata
    .align 8
cpuid_leaves:                     /* (leaf, subleaf): kvm/cpuid.rs DUMPED_LEAVES and DUMPED_EXT_LEAF */
    .long 0, 0, 1, 0, 7, 0, 7, 1, 0xd, 1, 0x80000008, 0
    .align 8
isr_table:
    .quad isr0, isr1, isr2, isr3, isr4, isr5, isr6, isr7
    .quad isr8, isr9, isr10, isr11, isr12, isr13, isr14, isr15
    .quad isr16, isr17, isr18, isr19, isr20, isr21, isr22, isr23
    .quad isr24, isr25, isr26, isr27, isr28, isr29, isr30, isr31

    .section .note.GNU-stack,"",@progbits
