/*
 * Timer preemption, switched on by the `preempt` command-line word (QEMU
 * build). A "cruncher" thread computes with interrupts enabled and never
 * yields. The local APIC timer interrupts it through irq_timer
 * (irq_entry.S), a stub without CFI, and timer_interrupt() switches away
 * from it. Every
 * other thread runs with interrupts disabled, as before, so only the
 * cruncher is ever preempted.
 *
 * The thread passed to preempt_start() (the worker) is held off the run
 * queue until the cruncher has been preempted PREEMPTIONS_BEFORE_RELEASE
 * times, so whatever the worker's end mode does, a capture finds the
 * cruncher asleep inside the timer interrupt.
 */
#include "kernel.h"

#define LAPIC_BASE 0xfee00000UL /* identity-mapped, uncached, by boot.S */
#define LAPIC_EOI 0x0b0
#define LAPIC_SPURIOUS 0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL_COUNT 0x380
#define LAPIC_TIMER_DIVIDE 0x3e0
#define LAPIC_SOFTWARE_ENABLE (1U << 8)
#define LVT_TIMER_PERIODIC (1U << 17)
#define TIMER_DIVIDE_BY_16 0x3
#define TIMER_VECTOR 32
#define SPURIOUS_VECTOR 0xff
/* QEMU's APIC bus runs at 1 GHz: 62500 ticks of 16 ns make 1 ms. */
#define TIMER_INITIAL_COUNT 62500U

#define PREEMPTIONS_BEFORE_RELEASE 3

void irq_timer(void);

/* Timer interrupts taken, and how many of them preempted the cruncher. */
volatile unsigned long timer_ticks;
volatile unsigned long preemptions;
/* Rounds of crunch_numbers() done; it grows while the cruncher runs. */
volatile unsigned long crunch_rounds;
/*
 * The registers the timer saved when it last preempted the cruncher. A
 * test sets gdb's registers from it to unwind the interrupted frames.
 */
struct trap_frame *volatile cruncher_frame;

static struct thread *cruncher;
static struct thread *held_thread;
static char cruncher_stack[THREAD_STACK_SIZE] __attribute__((aligned(4096)));

static void lapic_write(unsigned int reg, uint32_t value)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = value;
}

noinline void timer_interrupt(struct trap_frame *frame)
{
	timer_ticks++;
	lapic_write(LAPIC_EOI, 0);
	if (this_cpu()->current != cruncher)
		return;
	cruncher_frame = frame;
	preemptions++;
	if (preemptions == PREEMPTIONS_BEFORE_RELEASE && held_thread)
		held_thread->flags |= THREAD_RUNNABLE;
	schedule();
}

noinline unsigned long mix_block(unsigned long state, int rounds)
{
	for (int i = 0; i < rounds; i++)
		state = (state ^ (state >> 29)) * 0xbf58476d1ce4e5b9UL + i;
	return state;
}

noinline unsigned long crunch_numbers(unsigned long seed)
{
	unsigned long state = seed;

	for (;;) {
		state = mix_block(state, 1000);
		crunch_rounds++;
	}
	return state;
}

static void cruncher_main(void *arg)
{
	printk("cruncher: started, preemptible\n");
	__asm__ volatile("sti" ::: "memory");
	crunch_numbers((unsigned long)arg);
}

void preempt_start(struct thread *held)
{
	cruncher = thread_create("cruncher", cruncher_main, (void *)0x5eedUL,
				 cruncher_stack, THREAD_STACK_SIZE);
	if (!cruncher)
		return;
	if (held) {
		held->flags &= ~THREAD_RUNNABLE;
		held_thread = held;
	}
	idt_set_interrupt(TIMER_VECTOR, irq_timer);
	lapic_write(LAPIC_SPURIOUS, LAPIC_SOFTWARE_ENABLE | SPURIOUS_VECTOR);
	lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
	lapic_write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | TIMER_VECTOR);
	lapic_write(LAPIC_TIMER_INITIAL_COUNT, TIMER_INITIAL_COUNT);
	printk("preempt: timer on, %s held until %d preemptions\n",
	       held ? held->name : "nothing", PREEMPTIONS_BEFORE_RELEASE);
}
