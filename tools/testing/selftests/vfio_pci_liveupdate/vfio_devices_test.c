// SPDX-License-Identifier: GPL-2.0
/*
 * The test bed itself, checked in both kernels of the two-stage test: our
 * module is loaded, every emulated device is bound to vfio-pci, and each one's
 * VFIO cdev opens, binds to iommufd and answers VFIO_DEVICE_GET_INFO and a
 * config space read.
 */
#define _GNU_SOURCE
#include <linux/pci_regs.h>

#include "vfio_lu_util.h"
#include "kselftest_harness.h"

/* The devices given on the command line or in $VFIO_SELFTESTS_BDF. */
static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

TEST(module_loaded)
{
	char state[32];

	ASSERT_EQ(0, vfio_lu_read_file("/sys/module/" VFIO_LU_MODULE "/initstate",
				       state, sizeof(state)))
		TH_LOG("module " VFIO_LU_MODULE " is not loaded");
	ASSERT_STREQ("live", state);
}

TEST(devices_bound_to_vfio_pci)
{
	unsigned int ids[VFIO_LU_MAX_DEVS][2];
	int nids, n = ndevs, i;
	char drv[64];

	/* One device given per device the host emulated (vfio_lu_devs=). */
	nids = vfio_lu_wanted_ids("vfio_lu_devs", ids, VFIO_LU_MAX_DEVS);
	ASSERT_LT(0, nids) TH_LOG("no vfio_lu_devs= on the kernel command line");
	ASSERT_EQ(nids, n) TH_LOG("expected %d emulated devices, %d given", nids, n);
	for (i = 0; i < n; i++) {
		bool wanted = false;

		for (int j = 0; j < nids; j++)
			wanted |= ids[j][0] == devs[i].vendor && ids[j][1] == devs[i].device;
		EXPECT_TRUE(wanted) TH_LOG("%s (%04x:%04x) is not one of vfio_lu_devs=",
					   devs[i].bdf, devs[i].vendor, devs[i].device);
	}
	for (i = 0; i < n; i++) {
		vfio_lu_driver(devs[i].bdf, drv, sizeof(drv));
		EXPECT_STREQ("vfio-pci", drv)
			TH_LOG("%s (%04x:%04x) is bound to '%s'", devs[i].bdf,
			       devs[i].vendor, devs[i].device, drv);
	}
}

/*
 * The first open of each device resets it (a bus reset takes more than a
 * second), and the debug kernel runs about 30 times slower under TCG, with
 * other VMs beside it: more than the harness's default 30 s for all devices.
 */
FIXTURE(devices) {};
FIXTURE_SETUP(devices) {}
FIXTURE_TEARDOWN(devices) {}

TEST_F_TIMEOUT(devices, cdev_bind_iommufd_get_info, 300)
{
	int n = ndevs, i;

	ASSERT_LT(0, n);
	for (i = 0; i < n; i++) {
		struct vfio_device_info info = { .argsz = sizeof(info) };
		const char *bdf = devs[i].bdf;
		struct iommu *iommu;
		uint16_t vendor = 0;
		int devfd, iommufd;

		devfd = vfio_lu_open_cdev(bdf);
		ASSERT_LE(0, devfd) TH_LOG("%s: open VFIO cdev: %s", bdf, strerror(-devfd));
		iommu = iommu_init(MODE_IOMMUFD);
		iommufd = iommu->iommufd;

		/* Before BIND_IOMMUFD the device file refuses device ioctls. */
		EXPECT_NE(0, ioctl(devfd, VFIO_DEVICE_GET_INFO, &info));

		ASSERT_EQ(0, __vfio_device_bind_iommufd(devfd, iommufd, NULL))
			TH_LOG("%s: VFIO_DEVICE_BIND_IOMMUFD failed", bdf);
		ASSERT_EQ(0, ioctl(devfd, VFIO_DEVICE_GET_INFO, &info))
			TH_LOG("%s: VFIO_DEVICE_GET_INFO: %s", bdf, strerror(errno));
		EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI) TH_LOG("%s", bdf);
		EXPECT_LT(VFIO_PCI_CONFIG_REGION_INDEX, info.num_regions) TH_LOG("%s", bdf);
		EXPECT_EQ(VFIO_PCI_NUM_IRQS, info.num_irqs) TH_LOG("%s", bdf);

		/* The config space seen through VFIO is the device's. */
		ASSERT_EQ(0, vfio_lu_config_read(devfd, &vendor, 2, PCI_VENDOR_ID))
			TH_LOG("%s: config read failed", bdf);
		EXPECT_EQ(devs[i].vendor, vendor) TH_LOG("%s", bdf);

		close(devfd);
		iommu_cleanup(iommu);
	}
}

int main(int argc, char **argv)
{
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return test_harness_run(argc, argv);
}
