/*
 * COM1 (I/O port 0x3f8) output, or the Xen PV console ring in the Xen
 * build, and a small printk: %s %c %d %u %x %p with
 * the l modifier, a field width and zero padding.
 */
#include "kernel.h"
#ifdef STARDUST_XEN_PV
#include "xen/xen.h"
#endif

#ifndef STARDUST_XEN_PV
#define COM1 0x3f8
#define UART_DATA 0
#define UART_INTERRUPT_ENABLE 1
#define UART_FIFO_CONTROL 2
#define UART_LINE_CONTROL 3
#define UART_MODEM_CONTROL 4
#define UART_LINE_STATUS 5
#define UART_LSR_THR_EMPTY 0x20
#endif

/*
 * Serializes whole printk() calls between vCPUs, so lines do not interleave.
 * NOTE: an exception raised inside printk() deadlocks in trap_handler()'s
 * printk(); nothing in printk() faults today.
 */
static volatile int printk_lock;

#ifndef STARDUST_XEN_PV
void serial_init(void)
{
	outb(COM1 + UART_INTERRUPT_ENABLE, 0x00);
	outb(COM1 + UART_LINE_CONTROL, 0x80); /* divisor latch */
	outb(COM1 + UART_DATA, 0x01);         /* 115200 baud */
	outb(COM1 + UART_INTERRUPT_ENABLE, 0x00);
	outb(COM1 + UART_LINE_CONTROL, 0x03); /* 8n1 */
	outb(COM1 + UART_FIFO_CONTROL, 0xc7);
	outb(COM1 + UART_MODEM_CONTROL, 0x03);
}

static void serial_putc(char c)
{
	while (!(inb(COM1 + UART_LINE_STATUS) & UART_LSR_THR_EMPTY))
		cpu_relax();
	outb(COM1 + UART_DATA, (uint8_t)c);
}

#endif

static void put_char(char c)
{
#ifdef STARDUST_XEN_PV
	/* xenconsoled logs the bytes as they are: no carriage return. */
	xen_console_putc(c);
#else
	if (c == '\n')
		serial_putc('\r');
	serial_putc(c);
#endif
}

static void put_number(unsigned long value, unsigned int base, int width,
		       char pad, int negative)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[value % base];
		value /= base;
	} while (value);
	if (negative)
		digits[n++] = '-';
	for (; width > n; width--)
		put_char(pad);
	while (n)
		put_char(digits[--n]);
}

static void vprintk(const char *fmt, va_list args)
{
	for (; *fmt; fmt++) {
		int is_long = 0, width = 0;
		char pad = ' ';

		if (*fmt != '%') {
			put_char(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			is_long = 1;
			fmt++;
		}

		switch (*fmt) {
		case 's': {
			const char *s = va_arg(args, const char *);

			for (s = s ? s : "(null)"; *s; s++)
				put_char(*s);
			break;
		}
		case 'c':
			put_char((char)va_arg(args, int));
			break;
		case 'd':
		case 'i': {
			long value = is_long ? va_arg(args, long) : va_arg(args, int);
			unsigned long magnitude = value < 0 ? -(unsigned long)value
							    : (unsigned long)value;

			put_number(magnitude, 10, width, pad, value < 0);
			break;
		}
		case 'u':
			put_number(is_long ? va_arg(args, unsigned long)
					   : va_arg(args, unsigned int),
				   10, width, pad, 0);
			break;
		case 'x':
			put_number(is_long ? va_arg(args, unsigned long)
					   : va_arg(args, unsigned int),
				   16, width, pad, 0);
			break;
		case 'p':
			put_char('0');
			put_char('x');
			put_number((unsigned long)va_arg(args, void *), 16, width,
				   pad, 0);
			break;
		case '%':
			put_char('%');
			break;
		case '\0':
			return;
		default:
			put_char('%');
			put_char(*fmt);
			break;
		}
	}
}

void printk(const char *fmt, ...)
{
	va_list args;

	while (__atomic_exchange_n(&printk_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	va_start(args, fmt);
	vprintk(fmt, args);
	va_end(args);
#ifdef STARDUST_XEN_PV
	xen_console_flush();
#endif
	__atomic_store_n(&printk_lock, 0, __ATOMIC_RELEASE);
}
